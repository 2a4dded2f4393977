// Worker thread: the SHA-256 of a whole disk image, fed in offset order.
// SHA-256 is serial, so it gets a core of its own while the main thread
// moves bytes and the chunk pool decodes. Runs of zeros arrive as a count
// and are hashed from one zero buffer (nothing allocated per run); every
// message is acknowledged with its byte count so the feeder can bound
// what is queued here.
import {createHash} from 'node:crypto'
import {parentPort} from 'node:worker_threads'

export type HashRequest = {op: 'data'; data: Uint8Array} | {op: 'zeros'; length: number} | {op: 'digest'}
export type HashReply = {op: 'ack'; bytes: number} | {op: 'digest'; hex: string}

const ZEROS = new Uint8Array(4 * 1024 * 1024)
const hash = createHash('sha256')

parentPort?.on('message', (req: HashRequest) => {
  if (req.op === 'data') {
    hash.update(req.data)
    parentPort!.postMessage({op: 'ack', bytes: req.data.length} satisfies HashReply)
  } else if (req.op === 'zeros') {
    for (let left = req.length; left > 0; left -= ZEROS.length) hash.update(left >= ZEROS.length ? ZEROS : ZEROS.subarray(0, left))
    parentPort!.postMessage({op: 'ack', bytes: req.length} satisfies HashReply)
  } else {
    parentPort!.postMessage({op: 'digest', hex: hash.digest('hex')} satisfies HashReply)
  }
})
