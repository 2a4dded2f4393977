#!/usr/bin/env node
// Reads, writes and fsyncs of chunk objects share libuv's thread pool;
// the default of 4 threads starves parallel uploads. Set before first use.
process.env.UV_THREADPOOL_SIZE ??= '16'
const {execute} = await import('@oclif/core')
await execute({dir: import.meta.url})
