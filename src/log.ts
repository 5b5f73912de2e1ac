// JSON logs (pino) on stderr. Never one line per event: callers log
// summaries and count the rest in metrics.
import pino from 'pino';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const LEVELS: readonly string[] = ['debug', 'info', 'warn', 'error'];

export interface Logger {
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

export function isLogLevel(s: string): s is LogLevel {
  return LEVELS.includes(s);
}

/** A pino logger, or (for tests and one-shot commands) lines written through `write`. */
export function createLogger(level: LogLevel = 'info', write?: (line: string) => void): Logger {
  if (write) {
    const at = (lvl: LogLevel) => (msg: string) => {
      if (LEVELS.indexOf(lvl) >= LEVELS.indexOf(level)) write(`${lvl} ${msg}\n`);
    };
    return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
  }
  const p = pino({ level, base: { svc: 'driftwatch' }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ fd: 2, sync: true }));
  return { debug: (m) => p.debug(m), info: (m) => p.info(m), warn: (m) => p.warn(m), error: (m) => p.error(m) };
}
