// Package s3blobs keeps artifacts and caches in S3-compatible object
// storage (AWS S3, MinIO, Ceph, ...), for installations larger than the
// embedded JetStream store suits: an artifact.Blobs.
//
// Objects are written without knowing their size: an archive is read in
// parts of PartSize bytes (one part in memory at a time); one part is put
// whole, more go as a multipart upload, aborted on any error so that no
// part is left behind.
package s3blobs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/hodei-ci/hodei/internal/artifact"
)

// PartSize is the size of the parts of a multipart upload (S3 takes 5 MiB
// at least, but for the last).
const PartSize = 8 << 20

// Blobs is a bucket (and a key prefix in it).
type Blobs struct {
	c      *s3.Client
	bucket string
	prefix string
}

var _ artifact.Blobs = (*Blobs)(nil)

// New keeps the objects in bucket, under prefix, through c.
func New(c *s3.Client, bucket, prefix string) *Blobs {
	return &Blobs{c: c, bucket: bucket, prefix: prefix}
}

// Open reads a location such as
// s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1&path-style=1
// and makes the client with the AWS SDK's default credentials (the
// environment, the shared files, an instance role).
func Open(ctx context.Context, location string) (*Blobs, error) {
	u, err := url.Parse(location)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return nil, fmt.Errorf("artifact store %q: want s3://BUCKET[/PREFIX][?endpoint=URL&region=R&path-style=1]", location)
	}
	q := u.Query()
	var opts []func(*config.LoadOptions) error
	if r := q.Get("region"); r != "" {
		opts = append(opts, config.WithRegion(r))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("artifact store %s: %w", location, err)
	}
	c := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if e := q.Get("endpoint"); e != "" {
			o.BaseEndpoint = aws.String(e)
		}
		o.UsePathStyle = q.Get("path-style") == "1" || q.Get("path-style") == "true"
		// Every file of an archive is checked against its recorded
		// sha256 on download: the SDK's own checksums (which S3-compatible
		// servers compute differently for multipart objects) would only
		// add work.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	return New(c, u.Host, strings.Trim(u.Path, "/")), nil
}

func (b *Blobs) key(k string) string {
	if b.prefix == "" {
		return k
	}
	return b.prefix + "/" + k
}

// Put stores what r gives under key.
func (b *Blobs) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	first, err := readPart(r)
	if err != nil {
		return 0, fmt.Errorf("s3 put %s: %w", key, err)
	}
	if len(first) < PartSize {
		_, err := b.c.PutObject(ctx, &s3.PutObjectInput{Bucket: &b.bucket, Key: aws.String(b.key(key)), Body: bytes.NewReader(first), ContentLength: aws.Int64(int64(len(first)))})
		if err != nil {
			return 0, fmt.Errorf("s3 put %s: %w", key, err)
		}
		return int64(len(first)), nil
	}
	up, err := b.c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &b.bucket, Key: aws.String(b.key(key))})
	if err != nil {
		return 0, fmt.Errorf("s3 put %s: %w", key, err)
	}
	n, err := b.parts(ctx, up.UploadId, key, first, r)
	if err != nil {
		_, _ = b.c.AbortMultipartUpload(context.WithoutCancel(ctx), &s3.AbortMultipartUploadInput{Bucket: &b.bucket, Key: aws.String(b.key(key)), UploadId: up.UploadId})
		return 0, fmt.Errorf("s3 put %s: %w", key, err)
	}
	return n, nil
}

// parts uploads part after part, first being read already, and completes
// the upload.
func (b *Blobs) parts(ctx context.Context, id *string, key string, first []byte, r io.Reader) (int64, error) {
	var done []types.CompletedPart
	var total int64
	part := first
	for num := int32(1); len(part) > 0; num++ {
		out, err := b.c.UploadPart(ctx, &s3.UploadPartInput{Bucket: &b.bucket, Key: aws.String(b.key(key)), UploadId: id,
			PartNumber: aws.Int32(num), Body: bytes.NewReader(part), ContentLength: aws.Int64(int64(len(part)))})
		if err != nil {
			return 0, err
		}
		done = append(done, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(num)})
		total += int64(len(part))
		if len(part) < PartSize {
			break
		}
		if part, err = readPart(r); err != nil {
			return 0, err
		}
	}
	_, err := b.c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: &b.bucket, Key: aws.String(b.key(key)), UploadId: id,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: done}})
	return total, err
}

// readPart reads up to PartSize bytes; fewer only at the end.
func readPart(r io.Reader) ([]byte, error) {
	buf := make([]byte, PartSize)
	n, err := io.ReadFull(r, buf)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = nil
	}
	return buf[:n], err
}

// Get streams the object key.
func (b *Blobs) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	out, err := b.c.GetObject(ctx, &s3.GetObjectInput{Bucket: &b.bucket, Key: aws.String(b.key(key))})
	var nk *types.NoSuchKey
	if errors.As(err, &nk) {
		return nil, fmt.Errorf("s3 get %s: %w", key, artifact.ErrNoObject)
	}
	if err != nil {
		return nil, fmt.Errorf("s3 get %s: %w", key, err)
	}
	return out.Body, nil
}

// Delete removes the object key (S3 answers a missing key as deleted).
func (b *Blobs) Delete(ctx context.Context, key string) error {
	if _, err := b.c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &b.bucket, Key: aws.String(b.key(key))}); err != nil {
		return fmt.Errorf("s3 delete %s: %w", key, err)
	}
	return nil
}
