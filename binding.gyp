{
  "targets": [
    {
      "target_name": "vdsnap_seek",
      "sources": ["native/seek.c"]
    }
  ]
}
