/** The management plane's public surface. */
export { buildControlServer, DEFAULT_BODY_LIMIT } from './server.js';
export type { ControlOptions, PolicyMeta, RouteRole, Who } from './context.js';
export { ControlContext } from './context.js';
export { EventRecorder } from './recorder.js';
export { loadEffectivePolicy } from './policy-effective.js';
export { syncFromFile, propose, apply, promote, rollback, approve } from './policy-ops.js';
export { ApiError } from './errors.js';
