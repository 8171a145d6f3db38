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
)

// AuditActions is every AuditAction, in the order the admin page lists them.
var AuditActions = []AuditAction{
	ActionIssue, ActionRenew, ActionIssueServer, ActionRevoke, ActionTokenCreate, ActionTokenRevoke,
	ActionLogin, ActionLogout, ActionAdminPassword,
}
