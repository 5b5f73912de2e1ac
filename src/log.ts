// Plain leveled log lines on stderr. Never one line per event: callers log
// summaries and count the rest.
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

export function isLogLevel(s: string): s is LogLevel {
  return s in ORDER;
}

export function createLogger(level: LogLevel = 'info', write: (line: string) => void = (l) => process.stderr.write(l)): Logger {
  const at = (lvl: LogLevel) => (msg: string) => {
    if (ORDER[lvl] >= ORDER[level]) write(`${new Date().toISOString()} ${lvl.toUpperCase().padEnd(5)} ${msg}\n`);
  };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}
