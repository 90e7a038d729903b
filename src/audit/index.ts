export { AuditLog, auditFileName, genesisHash, openEntry, sealEntry, verifyAuditFiles } from "./audit-log.js";
export type { AuditAppend, AuditHead, AuditVerifyReport } from "./audit-log.js";
