// info IMAGE: open, describe, close.
import {openImage} from './open.js'
import type {ImageInfo, OpenOptions} from './types.js'

export async function imageInfo(path: string, opts: OpenOptions = {}): Promise<ImageInfo> {
  const img = await openImage(path, opts)
  try {
    return await img.info()
  } finally {
    await img.close()
  }
}
