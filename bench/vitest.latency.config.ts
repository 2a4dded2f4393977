import {defineConfig} from 'vitest/config'

export default defineConfig({test: {include: ['bench/latency.perf.ts'], testTimeout: 600_000, pool: 'forks'}})
