/**
 * Vitest global setup: runs once before any test file. A missing service gets one visible line (the tests
 * that need it skip themselves through `skipWithout`), or, under CI=true, fails the run before it starts.
 */
import { SERVICES, hasService } from './services.js';

export default function checkServices(): void {
  for (const service of Object.values(SERVICES)) {
    if (hasService(service)) continue;
    const line = `${service.command} is not installed: the tests that need it are skipped (install it with: ${service.install})`;
    if (process.env.CI === 'true') throw new Error(`${line.replace('are skipped', 'cannot run')}; under CI=true a missing service is a failure.`);
    process.stderr.write(`\n  SKIP ${line}\n\n`);
  }
}
