// restore --overlay: the snapshot's blocks with a served client's writes on
// top. The overlay (src/overlay/) replaces whatever sectors it holds; blocks
// it does not touch pass through untouched (a zero block stays a hole).
import type {OverlayFile} from '../overlay/overlay-file.js'
import type {Block, BlockSource} from '../repo/block-source.js'

/** Also wants every block the overlay touches (a delta restore must write them). */
export function wantedWithOverlay(wanted: (b: number) => boolean, source: BlockSource, overlay: OverlayFile): (b: number) => boolean {
  return (b) => wanted(b) || overlay.touches(b * source.blockSize, source.blockLength(b))
}

export async function* overlayBlocks(blocks: AsyncIterable<Block>, overlay: OverlayFile): AsyncGenerator<Block> {
  let zero = Buffer.alloc(0)
  for await (const block of blocks) {
    if (!overlay.touches(block.offset, block.length)) {
      yield block
      continue
    }
    // A copy: the source's buffer may be cached and used again.
    const data = block.data ? Buffer.from(block.data) : Buffer.alloc(block.length)
    await overlay.patch(data, block.offset)
    if (zero.length !== data.length) zero = Buffer.alloc(data.length)
    yield {...block, data: data.equals(zero) ? null : data}
  }
}
