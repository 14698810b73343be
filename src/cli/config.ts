import { readFileSync } from 'node:fs';
import { formatProblem } from '../core/errors.js';
import { parseConfig } from '../config/load.js';

export function configCheckCommand(file: string): void {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    process.stderr.write(`${file}: cannot read: ${(err as Error).message}\n`);
    process.exitCode = 1;
    return;
  }
  const r = parseConfig(text);
  if (r.ok) {
    process.stdout.write(`${file}: ok\n`);
    return;
  }
  for (const p of r.problems) process.stdout.write(`${file}: ${formatProblem(p)}\n`);
  process.exitCode = 1;
}
