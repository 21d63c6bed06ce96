import { defineConfig } from 'vitest/config';

// isolated-vm needs `--no-node-snapshot`, which worker threads cannot take, so tests run in forks.
export default defineConfig({
  test: {
    pool: 'forks',
    execArgv: ['--no-node-snapshot'],
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Two cores here: more parallel forks only make the timing-sensitive sandbox tests noisy.
    maxWorkers: 2,
  },
});
