package artifact

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
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
type JetStreamBlobs struct {
	os    jetstream.ObjectStore
	spool string // where Get copies objects ("" for the system's temporary directory)
}

var _ Blobs = (*JetStreamBlobs)(nil)

// NewJetStreamBlobs creates (or opens, and updates to replicas copies) the
// bucket, kept by replicas servers of a NATS cluster (0 means 1). Get
// copies each object into an unlinked file of spool ("" for the system's
// temporary directory) before it is read.
func NewJetStreamBlobs(ctx context.Context, js jetstream.JetStream, spool string, replicas int) (*JetStreamBlobs, error) {
	os, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      Bucket,
		Description: "Hodei artifacts and caches",
		Storage:     jetstream.FileStorage,
		Compression: false, // the archives are compressed already
		Replicas:    max(replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w", Bucket, err)
	}
	return &JetStreamBlobs{os: os, spool: spool}, nil
}

// Put stores r under key.
func (b *JetStreamBlobs) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	info, err := b.os.Put(ctx, jetstream.ObjectMeta{Name: key, Opts: &jetstream.ObjectMetaOptions{ChunkSize: 1 << 20}}, r)
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	return int64(info.Size), nil
}

// Get returns the object key. JetStream delivers an object by pushing its
// chunks as fast as it can: a reader slower than that (a job extracting
// many small files, an HTTP client) would make the subscription fall
// behind and lose chunks. So Get first copies the object, at JetStream's
// pace, into an unlinked file of the spool directory (never into memory;
// JetStream checks its digest at the end), and returns that file.
func (b *JetStreamBlobs) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	r, err := b.os.Get(ctx, key)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, fmt.Errorf("get %s: %w", key, ErrNoObject)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	defer r.Close()
	f, err := os.CreateTemp(b.spool, "hodei-blob-*")
	if err != nil {
		return nil, fmt.Errorf("get %s: spool: %w", key, err)
	}
	_ = os.Remove(f.Name()) // gone when closed
	if _, err := io.Copy(f, r); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("get %s: spool: %w", key, err)
	}
	return f, nil
}

// readTimeout bounds the copy of one object.
const readTimeout = time.Hour

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
