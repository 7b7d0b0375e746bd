package s3blobs_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http/httptest"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/hodei-ci/hodei/internal/artifact"
	"github.com/hodei-ci/hodei/internal/artifact/s3blobs"
)

// StartS3 starts an S3-compatible server in the test (gofakes3: the S3
// protocol over real HTTP, objects in memory) with the bucket "hodei",
// sets the AWS credentials of the environment, and returns the location
// s3blobs.Open takes.
func startS3(t *testing.T) string {
	t.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket("hodei"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gofakes3.New(backend).Server())
	t.Cleanup(srv.Close)
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	return "s3://hodei/artifacts?region=us-east-1&path-style=1&endpoint=" + srv.URL
}

// TestS3BlobsAgainstAnS3Server: objects of one part and of several
// (multipart) come back byte for byte; a missing or deleted one is
// ErrNoObject.
func TestS3BlobsAgainstAnS3Server(t *testing.T) {
	b, err := s3blobs.Open(context.Background(), startS3(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, size := range []int{0, 1000, s3blobs.PartSize, 2*s3blobs.PartSize + 12345} {
		data := make([]byte, size)
		_, _ = rand.Read(data)
		// A reader that does not say its size, as an archive being packed.
		n, err := b.Put(ctx, "artifact/x", io.MultiReader(bytes.NewReader(data)))
		if err != nil || n != int64(size) {
			t.Fatalf("put %d bytes: %d, %v", size, n, err)
		}
		r, err := b.Get(ctx, "artifact/x")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		_ = r.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("get of %d bytes: %d bytes back, equal %v, %v", size, len(got), bytes.Equal(got, data), err)
		}
	}
	if err := b.Delete(ctx, "artifact/x"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "artifact/x"); !errors.Is(err, artifact.ErrNoObject) {
		t.Errorf("get after delete: %v, want ErrNoObject", err)
	}
	if _, err := b.Get(ctx, "never"); !errors.Is(err, artifact.ErrNoObject) {
		t.Errorf("get of a missing object: %v, want ErrNoObject", err)
	}
	if _, err := s3blobs.Open(ctx, "http://not-s3"); err == nil {
		t.Error("a location that is not s3:// was taken")
	}
}
