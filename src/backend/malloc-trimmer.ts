// While the backend ingests, the C heap's free pages go back to the kernel
// once a second (malloc_trim, through the native addon). Request and packed
// buffers of ~1 MB are malloc'd and freed many times a second on two threads;
// glibc returns only the free top of each arena, so the free space between
// chunks still in use stayed resident: the event loop's heap grew to 80-100
// MiB, of which the trims give back 25-40 (CPU per finding did not rise).
import { loadAddon } from '../native/loader.js';

export const TRIM_INTERVAL_MS = 1000;

/** Starts the trims; the function returned stops them. Without the addon (not built) there is nothing to stop. */
export function startMallocTrims(intervalMs = TRIM_INTERVAL_MS): () => void {
  let addon: ReturnType<typeof loadAddon>;
  try {
    addon = loadAddon();
  } catch {
    return () => {};
  }
  const timer = setInterval(() => void addon.mallocTrim(), intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
