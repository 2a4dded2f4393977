// Figures, not tests: run one of bench/*.perf.ts with `npm run bench:latency` / `bench:remote`.
import {defineConfig} from 'vitest/config'

export default defineConfig({test: {include: ['bench/*.perf.ts'], testTimeout: 1_800_000, pool: 'forks', fileParallelism: false}})
