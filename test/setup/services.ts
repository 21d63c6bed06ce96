/**
 * System services some tests need (redis-server, nginx). On a machine without one, those tests are skipped
 * and the global setup prints one line naming the service and how to install it; under CI=true a missing
 * service fails the run instead, since .ci/run installs them (issue 16).
 */
import { spawnSync } from 'node:child_process';

export interface Service {
  /** The command the tests start. */
  command: string;
  /** How to get it on Debian/Ubuntu. */
  install: string;
  /** Arguments that make the command print its version and exit 0. Default `--version`. */
  versionArgs?: string[];
}

export const SERVICES = {
  redis: { command: 'redis-server', install: 'apt-get install -y redis-server' },
  nginx: { command: 'nginx', install: 'apt-get install -y nginx', versionArgs: ['-v'] },
} satisfies Record<string, Service>;

const seen = new Map<string, boolean>();

/** True when the service's command runs here (`--version` exits 0). Cached per process. */
export function hasService(service: Service): boolean {
  let ok = seen.get(service.command);
  if (ok === undefined) {
    ok = spawnSync(service.command, service.versionArgs ?? ['--version'], { stdio: 'ignore' }).status === 0;
    seen.set(service.command, ok);
  }
  return ok;
}

/** True when the tests that need `service` must be skipped: it is missing and this is not CI. */
export function skipWithout(service: Service): boolean {
  return !hasService(service) && process.env.CI !== 'true';
}
