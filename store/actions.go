package store

// AuditAction names what an audit event records. Every action lanyard
// writes is one of the constants below, and AuditActions lists them all
// (the admin page's filter offers exactly that list).
type AuditAction string

// The audit actions.
const (
	// ActionIssue: a certificate issued by redeeming an enrollment token.
	ActionIssue AuditAction = "issue"
	// ActionRenew: a certificate issued as the renewal of another.
	ActionRenew AuditAction = "renew"
	// ActionIssueServer: the server's own TLS certificate issued at start.
	ActionIssueServer AuditAction = "issue.server"
	// ActionRevoke: a certificate revoked (with its renewals).
	ActionRevoke AuditAction = "revoke"
	// ActionTokenCreate and ActionTokenRevoke: an enrollment token
	// created or revoked.
	ActionTokenCreate AuditAction = "token.create"
	ActionTokenRevoke AuditAction = "token.revoke"
	// ActionLogin and ActionLogout: an admin web session began or ended.
	ActionLogin  AuditAction = "login"
	ActionLogout AuditAction = "logout"
	// ActionAdminPassword: the admin page's password was set.
	ActionAdminPassword AuditAction = "admin.password"
	// ActionAdminAdopt, ActionAdminRotate and ActionAdminRenew: the admin
	// client credential recorded, replaced or renewed.
	ActionAdminAdopt  AuditAction = "admin.adopt"
	ActionAdminRotate AuditAction = "admin.rotate"
	ActionAdminRenew  AuditAction = "admin.renew"
	// ActionRotateIntermediate: a new issuing intermediate installed.
	ActionRotateIntermediate AuditAction = "ca.rotate-intermediate"
	// ActionRotateRoot: a root rotation started (new root, new
	// intermediate, cross-certificates); ActionFinishRootRotation: the old
	// root retired once no certificate chained to it.
	ActionRotateRoot         AuditAction = "ca.rotate-root"
	ActionFinishRootRotation AuditAction = "ca.rotate-root.finish"
	// ActionDestroyRetiredKey: a retired intermediate's key destroyed
	// once no live certificate needed its CRL.
	ActionDestroyRetiredKey AuditAction = "ca.destroy-retired-key"
	// ActionTidy: expired records removed from the store.
	ActionTidy AuditAction = "tidy"
	// ActionStoreCompact: the store file compacted.
	ActionStoreCompact AuditAction = "store.compact"
	// ActionRestore: the store restored from a backup.
	ActionRestore AuditAction = "restore"
	// ActionACMEIssue: a certificate issued by finalizing an ACME order.
	ActionACMEIssue AuditAction = "acme.issue"
	// ActionACMEEABCreate and ActionACMEEABRevoke: an ACME external
	// account binding key minted or withdrawn by the admin.
	ActionACMEEABCreate AuditAction = "acme.eab.create"
	ActionACMEEABRevoke AuditAction = "acme.eab.revoke"
	// ActionACMEAccount: an ACME account opened with an EAB key.
	ActionACMEAccount AuditAction = "acme.account"
	// ActionACMEKeyChange: an ACME account's key replaced (keyChange).
	ActionACMEKeyChange AuditAction = "acme.key-change"
)

// AuditActions is every AuditAction, in the order the admin page lists them.
var AuditActions = []AuditAction{
	ActionIssue, ActionRenew, ActionIssueServer, ActionRevoke, ActionTokenCreate, ActionTokenRevoke,
	ActionLogin, ActionLogout, ActionAdminPassword, ActionAdminAdopt, ActionAdminRotate, ActionAdminRenew,
	ActionRotateIntermediate, ActionRotateRoot, ActionFinishRootRotation, ActionDestroyRetiredKey, ActionTidy, ActionStoreCompact, ActionRestore,
	ActionACMEIssue, ActionACMEEABCreate, ActionACMEEABRevoke, ActionACMEAccount, ActionACMEKeyChange,
}
