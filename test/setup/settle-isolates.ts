import { afterAll } from 'vitest';

// isolated-vm can crash the process (SIGSEGV, or a glibc mutex assertion and SIGABRT) when the process exits
// while an isolate stopped mid-run is still unwinding on its own thread. The `codemode` bin pauses 150 ms
// before exiting for the same reason (src/cli/codemode.ts, where the crash rate was measured); each test
// fork gets the same pause after a file, before vitest may end the fork.
afterAll(async () => {
  await new Promise((resolve) => setTimeout(resolve, 150));
});
