package revocation

import "fmt"

// MetaReader reads a meta value of the store.
type MetaReader interface {
	GetMeta(key string, v any) error
}

// StoredCRL returns the DER of the last CRL the server built and persisted
// in st (store.ErrNotFound, wrapped, when it never built one). `lanyard
// restore` reads it from the store being replaced: that CRL lists every
// revocation up to the moment the store was lost.
func StoredCRL(st MetaReader) ([]byte, error) {
	if p, ok := st.(interface {
		LatestCRL(after int64) (int64, []byte, error)
	}); ok {
		if _, der, err := p.LatestCRL(0); err == nil {
			return der, nil
		}
	}
	var m storedCRL // a store from before PublishCRL
	if err := st.GetMeta(metaKey, &m); err != nil {
		return nil, fmt.Errorf("stored CRL: %w", err)
	}
	return m.DER, nil
}
