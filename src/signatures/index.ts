import driftBurst from './drift-burst.js';
import execMapping from './exec-mapping.js';
import filelessExec from './fileless-exec.js';
import interactiveIntrusion from './interactive-intrusion.js';
import interpretedScript from './interpreted-script.js';
import modifiedExecutable from './modified-executable.js';
import nestedOverlayExec from './nested-overlay-exec.js';
import newExecutable from './new-executable.js';
import newScript from './new-script.js';
import tmpfsExec from './tmpfs-exec.js';
import volumeExec from './volume-exec.js';
import type { AnySignature } from '../sdk/signature.js';

export const builtinSignatures: AnySignature[] = [
  newExecutable,
  modifiedExecutable,
  filelessExec,
  tmpfsExec,
  newScript,
  interpretedScript,
  execMapping,
  volumeExec,
  nestedOverlayExec,
  interactiveIntrusion,
  driftBurst,
];
