// What a consumer of a snapshot's blocks in offset order reads: a
// BlockSource over a repository, or one over an archive, or a wrapper
// around one (restore's copyBlocks, an archive's stream). Its own module so
// that archive readers, below the use cases, can name it.
import type {BlockSource} from './block-source.js'

export type BlockStream = Pick<BlockSource, 'snapshot' | 'virtualSize' | 'blockCount' | 'blockLength' | 'blocks' | 'chunksRead' | 'bytesFetched'> & Partial<Pick<BlockSource, 'release'>>
