// Logs on stderr: JSON lines (pino) for machines, or readable lines when a
// person watches a terminal. Never one line per event: callers log summaries
// and count the rest in metrics.
import { writeSync } from 'node:fs';
import pino from 'pino';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const LEVELS: readonly string[] = ['debug', 'info', 'warn', 'error'];
/** auto: pretty when stderr is a terminal, JSON otherwise. */
export type LogFormat = 'auto' | 'json' | 'pretty';
const FORMATS: readonly string[] = ['auto', 'json', 'pretty'];

export interface Logger {
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

export function isLogLevel(s: string): s is LogLevel {
  return LEVELS.includes(s);
}

export function isLogFormat(s: string): s is LogFormat {
  return FORMATS.includes(s);
}

/** The format `auto` stands for on this process's stderr. */
export function effectiveLogFormat(format: LogFormat, stderrIsTty = process.stderr.isTTY === true): 'json' | 'pretty' {
  if (format === 'auto') return stderrIsTty ? 'pretty' : 'json';
  return format;
}

/**
 * --log-format (or DRIFTWATCH_LOG_FORMAT) before the full configuration is
 * parsed, so errors from parsing it are already in the format asked for.
 */
export function logFormatFromArgs(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): LogFormat {
  let v: string | undefined = env['DRIFTWATCH_LOG_FORMAT'];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--log-format') v = argv[i + 1];
    else if (a.startsWith('--log-format=')) v = a.slice('--log-format='.length);
  }
  return v !== undefined && isLogFormat(v) ? v : 'auto';
}

const COLORS: Record<LogLevel, string> = { debug: '\x1b[90m', info: '\x1b[36m', warn: '\x1b[33m', error: '\x1b[31m' };

/** One readable line: local time, level, message. Colour only on a terminal without NO_COLOR. */
export function prettyLine(level: LogLevel, msg: string, now: Date, color: boolean): string {
  const t = now.toTimeString().slice(0, 8) + '.' + String(now.getMilliseconds()).padStart(3, '0');
  const lvl = level.toUpperCase().padEnd(5);
  return color ? `${t} ${COLORS[level]}${lvl}\x1b[0m ${msg}\n` : `${t} ${lvl} ${msg}\n`;
}

/** A pino logger, readable lines on a terminal, or (for tests) lines written through `write`. */
export function createLogger(level: LogLevel = 'info', write?: (line: string) => void, format: LogFormat = 'auto'): Logger {
  const enabled = (lvl: LogLevel) => LEVELS.indexOf(lvl) >= LEVELS.indexOf(level);
  if (write) {
    const at = (lvl: LogLevel) => (msg: string) => {
      if (enabled(lvl)) write(`${lvl} ${msg}\n`);
    };
    return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
  }
  if (effectiveLogFormat(format) === 'pretty') {
    const color = process.stderr.isTTY === true && !process.env['NO_COLOR'];
    const at = (lvl: LogLevel) => (msg: string) => {
      if (enabled(lvl)) writeSync(2, prettyLine(lvl, msg, new Date(), color));
    };
    return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
  }
  const p = pino({ level, base: { svc: 'driftwatch' }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ fd: 2, sync: true }));
  return { debug: (m) => p.debug(m), info: (m) => p.info(m), warn: (m) => p.warn(m), error: (m) => p.error(m) };
}
