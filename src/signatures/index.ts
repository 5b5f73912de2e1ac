import filelessExec from './fileless-exec.js';
import modifiedExecutable from './modified-executable.js';
import newExecutable from './new-executable.js';
import tmpfsExec from './tmpfs-exec.js';
import type { SignatureDefinition } from './sdk.js';

export const builtinSignatures: SignatureDefinition[] = [newExecutable, modifiedExecutable, filelessExec, tmpfsExec];
