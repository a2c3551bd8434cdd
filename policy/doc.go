// Package policy decides, per request, which fields of a dataset an
// authenticated consumer system may read, for which legal purpose, in which
// region, and how each field is masked. Nothing leaves a department without a
// grant that covers who asks, what and why: the default is deny.
//
// The package follows OPA's prepare-once, evaluate-many shape. Prepare
// compiles the dataset dictionary and the list of grants into an immutable,
// indexed Snapshot; Snapshot.Decide is pure (no I/O, no clock, no locks) and
// runs in a few microseconds with ten thousand active grants, because grants
// are indexed by dataset and then by consumer system id or department. An
// Engine holds the current Snapshot behind an atomic pointer and swaps in a
// new one when grants change: it rebuilds from a store.Store on a Change
// published on a Bus and on a periodic safety poll of the store's revision.
//
// Sharing classes come from the dataset dictionary, as the government
// data-sharing regulation defines them:
//
//   - not_shared: every request is PERMISSION_DENIED (DATASET_NOT_SHARED).
//   - unconditional: any authenticated principal stating a purpose may read
//     every field that is not classified personal, unmasked and nationwide;
//     personal fields still need a grant.
//   - conditional: only what grants allow.
//
// A grant matches a principal when its consumer names the principal's system
// id, or names no system but the principal's department and either no role or
// a role the principal holds. It covers a request when the purpose is one of
// its purposes and the request time t satisfies valid_from <= t < valid_until
// (valid_until is exclusive; an unset bound is open). Fields of all covering
// grants are united; where two grants give the same field with different
// masks, the least restrictive wins (no mask beats any mask, a partial mask
// beats MASK_KIND_REDACT).
//
// Requested fields that are not allowed are listed in Decision.Withheld with
// the most specific reason: GRANT_EXPIRED or GRANT_NOT_YET_VALID (a grant
// would give the field for this purpose but not now), then
// PURPOSE_NOT_COVERED (a grant gives the field, for other purposes), then
// FIELD_NOT_GRANTED (grants cover the purpose but not the field), then
// NO_GRANT. When no requested field is allowed, Decide returns an
// *apierr.Error with codes.PermissionDenied, the most specific of those
// reasons, and a message naming the dataset, the purpose and the fields.
//
// Rows are filtered by jurisdiction: a grant's jurisdiction is a prefix of
// the region code held in the dataset's region field. Decision.Admits tells
// whether a record of a region may be returned at all; when grants with
// different jurisdictions give different fields, Decision.FieldsFor and
// Decision.MaskFor give the exact view of one record, and callers shaping
// records should use them.
//
// Quotas are not part of the pure decision: Limiter counts requests, and
// DecideWithQuota decides and then charges the quota of every grant the
// decision used, failing with RESOURCE_EXHAUSTED (QUOTA_EXCEEDED).
//
// Masking is ApplyMask; the grant workflow (propose, legal review, revoke)
// is in package workflow and the grant stores in package store.
package policy
