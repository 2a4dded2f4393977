// vdsnap_seek: the data ranges of a sparse file, from lseek(SEEK_DATA /
// SEEK_HOLE). Node has no binding for these; without them a sparse raw image
// would be read hole by hole. Returns a flat array [offset, length, ...].
#define _GNU_SOURCE
#include <errno.h>
#include <node_api.h>
#include <unistd.h>

static napi_value DataRanges(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd = -1;
  double sizeD = 0;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_double(env, argv[1], &sizeD) != napi_ok) {
    napi_throw_type_error(env, NULL, "dataRanges(fd, size)");
    return NULL;
  }
  off_t size = (off_t)sizeD;
  napi_value out;
  napi_create_array(env, &out);
  uint32_t n = 0;
  off_t pos = 0;
  while (pos < size) {
    off_t data = lseek(fd, pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break; /* no more data */
      /* file system without hole support: everything is data */
      data = pos;
      napi_value a, b;
      napi_create_double(env, (double)data, &a);
      napi_create_double(env, (double)(size - data), &b);
      napi_set_element(env, out, n++, a);
      napi_set_element(env, out, n++, b);
      break;
    }
    if (data >= size) break;
    off_t hole = lseek(fd, data, SEEK_HOLE);
    if (hole < 0 || hole > size) hole = size;
    napi_value a, b;
    napi_create_double(env, (double)data, &a);
    napi_create_double(env, (double)(hole - data), &b);
    napi_set_element(env, out, n++, a);
    napi_set_element(env, out, n++, b);
    pos = hole;
  }
  return out;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "dataRanges", NAPI_AUTO_LENGTH, DataRanges, NULL, &fn);
  napi_set_named_property(env, exports, "dataRanges", fn);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
