/** The agent's operational log: JSON lines on stderr (pino), never a token or a key. */
import { pino, type Logger } from 'pino';

export type AgentLogger = Pick<Logger, 'info' | 'warn' | 'error' | 'debug'>;

export function agentLogger(level = process.env.CHOKEPOINT_LOG_LEVEL ?? 'info'): AgentLogger {
  return pino({ level, base: { component: 'agent' }, redact: ['token', '*.token', 'authorization', '*.authorization'] }, pino.destination(2));
}

export const silentAgentLogger: AgentLogger = pino({ level: 'silent' });
