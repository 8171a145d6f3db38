// Package hostdir keeps the host folder that `lanyard enroll` writes and the
// agent renews: a set of immutable version folders, a `current` symlink that
// is swapped atomically, and Certbot-style links for people and for tools that
// read once.
//
// Layout:
//
//	DIR/                      0700 when created here (an existing DIR keeps its mode)
//	DIR/.lock                 0600, flock(2) held by writers and by Open's clean-up
//	DIR/current -> versions/000042
//	DIR/versions/             0755
//	DIR/versions/000042/      0755, immutable once visible under its final name
//	                                 (but for the key's removal once superseded)
//	    cert.pem       0644   the leaf certificate only
//	    chain.pem      0644   the intermediates (possibly empty)
//	    fullchain.pem  0644   cert.pem followed by chain.pem
//	    privkey.pem    0600   the private key
//	DIR/{cert,chain,fullchain,privkey}.pem -> current/{same name}   (relative symlinks)
//	DIR/enrollment.json       0600   the [Enrollment]: the CA's URL, the key type, the AWS hand-off
//	DIR/ca.pem                0644   the CA roots the folder trusts (pinned at enroll, refreshed by renew)
//
// This package owns every file of the folder: the versions through [Dir],
// enrollment.json and ca.pem through [ReadEnrollment], [WriteEnrollment],
// [ReadRoots] and [WriteRoots] (each written atomically, internal/atomicfile).
//
// DIR itself is the single gate for who may look inside: it is created 0700,
// and an administrator who wants a group to read the certificates widens DIR
// (for example 0750 plus chgrp) without touching anything below it. The
// private key is 0600 in every version whatever DIR's mode is.
//
// # Why versions
//
// aws_signing_helper reads the certificate and the key at two different
// moments, and exits on a torn file. Swapping individual files can therefore
// pair a new certificate with an old key. Here a version folder only ever
// appears under its final name once all four files are written and fsynced
// (they are written into versions/.tmp-XXXX and the folder is renamed), and
// `current` is replaced by renaming a new symlink over it. A reader that
// resolves `current` once ([Dir.Current], [Dir.LoadCurrent]) and then reads
// files from versions/NNNNNN always sees one consistent version.
//
// # Pruning
//
// After each [Dir.Write], old versions are pruned. The newest Keep versions
// (default 5, current included) are always kept, the current version and the
// one just replaced are never pruned, and a version is deleted only once it
// stopped being current at least MinAge ago (default 10 minutes), so a reader
// that resolved `current` just before a swap can finish with its folder. The
// moment a version stopped being current is the moment its successor became
// current, recorded as the successor folder's modification time.
//
// A superseded version's private key is deleted as soon as the same MinAge
// has passed (by the next Write, Prune or Open; the agent calls Prune then),
// even while Keep still keeps the version: the certificates stay for
// history, the key, which nothing needs any more, does not wait on disk to
// be stolen. Loading such a version fails with ErrKeyRetired. This is the
// only change ever made inside a version folder.
//
// # Crash safety
//
// [Open] cleans up what an interrupted write leaves behind: temporary folders
// (versions/.tmp-*), temporary symlinks and files (DIR/.tmp-*), and complete
// version folders newer than `current` that were never swapped in. It also
// re-creates missing Certbot-style links. Clean-up only runs when Open can take
// the folder's lock without waiting, so it never interferes with a writer in
// another process.
package hostdir
