package artifact

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Blobs keeps the archives. Implementations are safe for concurrent use;
// Put reads r to its end (or to its first error) and stores the object
// whole or not at all; Get streams an object; Delete of a missing object
// is not an error.
type Blobs interface {
	Put(ctx context.Context, key string, r io.Reader) (int64, error)
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	Delete(ctx context.Context, key string) error
}

// ErrNoObject is wrapped by Get's error when the object does not exist.
var ErrNoObject = errors.New("no such object")

// Bucket is the JetStream object store bucket of artifacts and caches.
const Bucket = "HODEI_ARTIFACTS"

// JetStreamBlobs keeps the archives in a JetStream object store, in the
// NATS server's own storage (file-backed).
type JetStreamBlobs struct{ os jetstream.ObjectStore }

var _ Blobs = (*JetStreamBlobs)(nil)

// NewJetStreamBlobs creates (or opens) the bucket.
func NewJetStreamBlobs(ctx context.Context, js jetstream.JetStream) (*JetStreamBlobs, error) {
	os, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      Bucket,
		Description: "Hodei artifacts and caches",
		Storage:     jetstream.FileStorage,
		Compression: false, // the archives are compressed already
	})
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w", Bucket, err)
	}
	return &JetStreamBlobs{os: os}, nil
}

// Put stores r under key.
func (b *JetStreamBlobs) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	info, err := b.os.Put(ctx, jetstream.ObjectMeta{Name: key, Opts: &jetstream.ObjectMetaOptions{ChunkSize: 1 << 20}}, r)
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	return int64(info.Size), nil
}

// Get streams the object key. JetStream checks the object's digest when
// the whole object has been read. The object must be read within
// readTimeout (JetStream would otherwise give the whole read its default
// timeout of seconds), and until it is closed.
func (b *JetStreamBlobs) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	r, err := b.os.Get(ctx, key)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		cancel()
		return nil, fmt.Errorf("get %s: %w", key, ErrNoObject)
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	return &cancelReader{ReadCloser: r, cancel: cancel}, nil
}

// readTimeout bounds the reading of one object.
const readTimeout = 6 * time.Hour

// cancelReader ends its context when closed.
type cancelReader struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelReader) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// Delete removes the object key.
func (b *JetStreamBlobs) Delete(ctx context.Context, key string) error {
	err := b.os.Delete(ctx, key)
	if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// sweepTimeout bounds one deletion of the retention sweep.
const sweepTimeout = 30 * time.Second
