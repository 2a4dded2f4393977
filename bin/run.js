#!/usr/bin/env node
// Reads, writes and fsyncs of chunk objects share libuv's thread pool;
// the default of 4 threads starves parallel uploads. Set before first use.
process.env.UV_THREADPOOL_SIZE ??= '16'
const {execute} = await import('@oclif/core')
await execute({dir: import.meta.url})
// The command is done (its result and any error are written). Whatever is
// still open now — an SSH connection the server dropped half-way, a socket
// the SDK keeps alive — must not keep a cron job hanging: give it a moment
// to close by itself, then exit with the command's code.
setTimeout(() => process.exit(process.exitCode ?? 0), 1000).unref()
