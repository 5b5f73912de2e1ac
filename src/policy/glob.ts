// Shell-style globs (picomatch): `*` within a path segment, `**` across
// segments, `?` one character, `{a,b}` alternatives. Dots are literal and
// leading dots match like any other character (paths and image names, not a shell).
import picomatch from 'picomatch';

export function globToRegExp(glob: string): RegExp {
  return picomatch.makeRe(glob, { dot: true });
}
