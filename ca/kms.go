package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"go.step.sm/crypto/kms"
	"go.step.sm/crypto/kms/apiv1"
	"go.step.sm/crypto/kms/uri"
)

// kmsType returns the go.step.sm/crypto/kms type of a KMS URI such as
// "softkms:" or "awskms:region=…".
func kmsType(kmsURI string) (apiv1.Type, error) {
	t, err := apiv1.TypeOf(kmsURI)
	if err != nil {
		return "", fmt.Errorf("ca: KMS URI %q: %w", kmsURI, err)
	}
	return t, nil
}

// openKMS opens the key manager named by kmsURI. Only the KMS types compiled
// into the binary are available (this package brings softkms).
func openKMS(kmsURI string) (apiv1.KeyManager, apiv1.Type, error) {
	t, err := kmsType(kmsURI)
	if err != nil {
		return nil, "", err
	}
	km, err := kms.New(context.Background(), apiv1.Options{Type: t, URI: kmsURI})
	if err != nil {
		return nil, "", fmt.Errorf("ca: open KMS %q: %w", kmsURI, err)
	}
	return km, t, nil
}

// softKMSPath returns the key file a softkms URI names ("softkms:path=F",
// "softkms:F" or "softkms:///F").
func softKMSPath(keyURI string) (string, error) {
	u, err := uri.ParseWithScheme(string(apiv1.SoftKMS), keyURI)
	if err != nil {
		return "", fmt.Errorf("ca: softkms key URI %q: %w", keyURI, err)
	}
	switch {
	case u.Get("path") != "":
		return u.Get("path"), nil
	case u.Path != "":
		return u.Path, nil
	case u.Opaque != "":
		return u.Opaque, nil
	}
	return "", fmt.Errorf("ca: softkms key URI %q names no key file", keyURI)
}

// softKMSURI returns the softkms URI of a key file.
func softKMSURI(path string) string {
	return uri.New(string(apiv1.SoftKMS), url.Values{"path": []string{path}}).String()
}

// kmsKey is an intermediate key created through a KMS.
type kmsKey struct {
	signer crypto.Signer
	// uri is what Init stores in intermediate.key.uri.
	uri string
	// pem is the key file to write, for KMS types (softkms) that hand the
	// private key back instead of keeping it.
	pem []byte
	// closer closes the key manager.
	closer io.Closer
}

// pkcs11KeyName returns the key URI under which a new key is created in the
// PKCS#11 token kmsURI names: kmsURI itself when it already names an object
// (id and object), else kmsURI with a random 8-byte id and the label
// object added, so that every key lanyard creates in a token (one per
// rotation) has its own id and no URI needs to be made up by hand.
func pkcs11KeyName(kmsURI, object string) (string, error) {
	u, err := uri.ParseWithScheme(string(apiv1.PKCS11), kmsURI)
	if err != nil {
		return "", fmt.Errorf("ca: pkcs11 URI %q: %w", kmsURI, err)
	}
	hasID, hasObject := len(u.GetEncoded("id")) > 0, u.Get("object") != ""
	switch {
	case hasID && hasObject:
		return kmsURI, nil
	case hasID || hasObject:
		return "", fmt.Errorf("ca: pkcs11 URI %q: give both id and object for the new key, or neither (lanyard then picks them)", kmsURI)
	}
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return "", fmt.Errorf("ca: pkcs11 key id: %w", err)
	}
	var enc strings.Builder
	for _, b := range id {
		fmt.Fprintf(&enc, "%%%02x", b)
	}
	path, query, _ := strings.Cut(kmsURI, "?")
	name := path + ";id=" + enc.String() + ";object=" + url.PathEscape(object)
	if query != "" {
		name += "?" + query
	}
	return name, nil
}

// kmsKeyLabel is the PKCS#11 object label of an intermediate key created at
// now: unique per second, so the keys of successive rotations can be told
// apart in the token (pkcs11-tool --list-objects).
func kmsKeyLabel(now time.Time) string {
	return "lanyard-intermediate-" + now.UTC().Format("20060102T150405Z")
}

// kmsCreateKey creates the intermediate key through the KMS named by kmsURI.
// With softkms the key is written (encrypted with passphrase when it is
// non-nil) to keyFile (relative to the CA folder, so the folder can be
// moved). With pkcs11 the key is generated inside the token, not
// extractable, under kmsURI's id and object or, when kmsURI names no
// object, a fresh id and the label kmsKeyLabel(now). With other KMS types
// kmsURI also names the key to create.
func kmsCreateKey(kmsURI, keyFile string, spec keySpec, passphrase []byte, now time.Time) (*kmsKey, error) {
	km, t, err := openKMS(kmsURI)
	if err != nil {
		return nil, err
	}
	name := kmsURI
	switch t {
	case apiv1.SoftKMS:
		name = softKMSURI(keyFile)
	case apiv1.PKCS11:
		if name, err = pkcs11KeyName(kmsURI, kmsKeyLabel(now)); err != nil {
			km.Close()
			return nil, err
		}
	}
	resp, err := km.CreateKey(&apiv1.CreateKeyRequest{
		Name:               name,
		SignatureAlgorithm: spec.kmsSA,
		Bits:               spec.bits,
	})
	if err != nil {
		km.Close()
		return nil, fmt.Errorf("ca: KMS %q: create %s key: %w", kmsURI, spec.name, err)
	}
	signer, err := km.CreateSigner(&resp.CreateSignerRequest)
	if err != nil {
		km.Close()
		return nil, fmt.Errorf("ca: KMS %q: signer for new key: %w", kmsURI, err)
	}
	k := &kmsKey{signer: signer, uri: resp.Name, closer: km}
	if t == apiv1.SoftKMS {
		k.uri = name
		if resp.PrivateKey == nil {
			km.Close()
			return nil, fmt.Errorf("ca: KMS %q returned no private key", kmsURI)
		}
		if k.pem, err = marshalKey(resp.PrivateKey, passphrase); err != nil {
			km.Close()
			return nil, err
		}
	}
	return k, nil
}

// kmsLoadSigner loads the intermediate signer of the CA folder dir through
// a KMS. The key URI comes from uriFile when it exists (keyURI non-empty);
// otherwise, for softkms, from Dir/intermediate.key. kmsURI may be empty when
// keyURI is known: the KMS type is then taken from keyURI.
func kmsLoadSigner(dir, kmsURI, keyURI string, passphrase []byte) (crypto.Signer, io.Closer, error) {
	if kmsURI == "" {
		kmsURI = keyURI
	}
	km, t, err := openKMS(kmsURI)
	if err != nil {
		return nil, nil, err
	}
	req := &apiv1.CreateSignerRequest{SigningKey: keyURI, Password: passphrase}
	var keyFile string
	if t == apiv1.SoftKMS {
		keyFile = filepath.Join(dir, IntermediateKeyFile)
		if keyURI != "" {
			if keyFile, err = softKMSPath(keyURI); err != nil {
				km.Close()
				return nil, nil, err
			}
			if !filepath.IsAbs(keyFile) {
				keyFile = filepath.Join(dir, keyFile)
			}
		}
		req.SigningKey = softKMSURI(keyFile)
		// softkms reads the file itself; look first, so that a missing
		// or wrong passphrase and a garbage file get clear errors.
		data, err := readFile(keyFile)
		if err != nil {
			km.Close()
			return nil, nil, err
		}
		if _, err := parseSigner(keyFile, data, passphrase); err != nil {
			km.Close()
			return nil, nil, err
		}
	} else if keyURI == "" {
		km.Close()
		return nil, nil, fmt.Errorf("ca: KMS %q: %s is missing, so the intermediate key is unknown",
			kmsURI, filepath.Join(dir, IntermediateKeyURIFile))
	}
	signer, err := km.CreateSigner(req)
	if err != nil {
		km.Close()
		if errors.Is(err, x509.IncorrectPasswordError) || strings.Contains(err.Error(), "password protected") {
			return nil, nil, fmt.Errorf("%w: KMS key %s", ErrBadPassphrase, req.SigningKey)
		}
		return nil, nil, fmt.Errorf("ca: KMS %q: load intermediate key %s: %w", kmsURI, req.SigningKey, err)
	}
	return signer, km, nil
}
