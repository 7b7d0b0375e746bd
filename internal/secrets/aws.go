package secrets

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
)

// AWS reads and writes secrets in AWS Secrets Manager with the official SDK
// (github.com/aws/aws-sdk-go-v2). Secret NAME is the secret <Prefix>NAME
// ("hodei/NAME") holding a SecretString; versions are Secrets Manager's
// version ids, the current one being the version labelled AWSCURRENT.
// Restore moves AWSCURRENT back to an earlier version (Secrets Manager then
// labels the one it left AWSPREVIOUS).
//
// Credentials and region come from the SDK's default chain (environment,
// shared config, instance role) unless given. Hodei's tests run this code
// against a loopback fake of the Secrets Manager JSON API through a custom
// endpoint; no call to AWS itself is tested.
type AWS struct {
	c    *sm.Client
	opts AWSOptions
}

var _ Versioned = (*AWS)(nil)

// AWSOptions configure NewAWS.
type AWSOptions struct {
	Region string
	// Endpoint overrides the service endpoint (a VPC endpoint, a test
	// server).
	Endpoint string
	// Prefix is prepended to secret names ("hodei/").
	Prefix string
	// Credentials override the default chain.
	Credentials aws.CredentialsProvider
	// ForceDelete deletes at once instead of after Secrets Manager's
	// recovery window (during which the name cannot be reused).
	ForceDelete bool
}

// NewAWS loads the SDK configuration and makes a client.
func NewAWS(ctx context.Context, o AWSOptions) (*AWS, error) {
	if o.Prefix == "" {
		o.Prefix = "hodei/"
	}
	var lo []func(*config.LoadOptions) error
	if o.Region != "" {
		lo = append(lo, config.WithRegion(o.Region))
	}
	if o.Credentials != nil {
		lo = append(lo, config.WithCredentialsProvider(o.Credentials))
	}
	cfg, err := config.LoadDefaultConfig(ctx, lo...)
	if err != nil {
		return nil, fmt.Errorf("aws: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("aws: no region: set AWS_REGION or the region option")
	}
	c := sm.NewFromConfig(cfg, func(so *sm.Options) {
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(o.Endpoint)
		}
	})
	return &AWS{c: c, opts: o}, nil
}

func (a *AWS) id(name string) *string { return aws.String(a.opts.Prefix + name) }

func (a *AWS) wrap(name string, err error) error {
	var nf *smtypes.ResourceNotFoundException
	if errors.As(err, &nf) {
		return nameErr(name, ErrNotFound)
	}
	return nameErr(name, fmt.Errorf("aws secrets manager: %w", err))
}

// Get reads the AWSCURRENT version.
func (a *AWS) Get(ctx context.Context, name string) (Secret, error) {
	if err := checkName(name); err != nil {
		return Secret{}, err
	}
	out, err := a.c.GetSecretValue(ctx, &sm.GetSecretValueInput{SecretId: a.id(name)})
	if err != nil {
		return Secret{}, a.wrap(name, err)
	}
	return secretOfAWS(name, out), nil
}

func secretOfAWS(name string, out *sm.GetSecretValueOutput) Secret {
	s := Secret{Name: name, Version: aws.ToString(out.VersionId), Value: aws.ToString(out.SecretString)}
	if out.CreatedDate != nil {
		s.Created = *out.CreatedDate
	}
	return s
}

// GetVersion reads one version.
func (a *AWS) GetVersion(ctx context.Context, name, ver string) (Secret, error) {
	if err := checkName(name); err != nil {
		return Secret{}, err
	}
	out, err := a.c.GetSecretValue(ctx, &sm.GetSecretValueInput{SecretId: a.id(name), VersionId: aws.String(ver)})
	if err != nil {
		if _, gerr := a.c.GetSecretValue(ctx, &sm.GetSecretValueInput{SecretId: a.id(name)}); gerr == nil {
			return Secret{}, nameErr(name, ErrNoVersion)
		}
		return Secret{}, a.wrap(name, err)
	}
	return secretOfAWS(name, out), nil
}

// List lists the secrets under the prefix.
func (a *AWS) List(ctx context.Context) ([]Meta, error) {
	out := []Meta{}
	in := &sm.ListSecretsInput{Filters: []smtypes.Filter{{Key: smtypes.FilterNameStringTypeName, Values: []string{a.opts.Prefix}}}}
	p := sm.NewListSecretsPaginator(a.c, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("aws secrets manager: list: %w", err)
		}
		for _, e := range page.SecretList {
			name, ok := strings.CutPrefix(aws.ToString(e.Name), a.opts.Prefix)
			if !ok || !validKey(name) {
				continue // the name filter matches prefixes of words too
			}
			m := Meta{Name: name}
			for v, stages := range e.SecretVersionsToStages {
				for _, st := range stages {
					if st == "AWSCURRENT" {
						m.Version = v
					}
				}
			}
			if e.LastChangedDate != nil {
				m.Updated = *e.LastChangedDate
			}
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, k int) bool { return out[i].Name < out[k].Name })
	return out, nil
}

// Put writes a new version (creating the secret the first time).
func (a *AWS) Put(ctx context.Context, name, value string) (Meta, error) {
	if err := checkName(name); err != nil {
		return Meta{}, err
	}
	token := requestToken()
	out, err := a.c.PutSecretValue(ctx, &sm.PutSecretValueInput{SecretId: a.id(name), SecretString: aws.String(value), ClientRequestToken: aws.String(token)})
	var nf *smtypes.ResourceNotFoundException
	if errors.As(err, &nf) {
		cout, cerr := a.c.CreateSecret(ctx, &sm.CreateSecretInput{Name: a.id(name), SecretString: aws.String(value), ClientRequestToken: aws.String(token)})
		if cerr != nil {
			return Meta{}, a.wrap(name, cerr)
		}
		return Meta{Name: name, Version: aws.ToString(cout.VersionId), Updated: time.Now().UTC()}, nil
	}
	if err != nil {
		return Meta{}, a.wrap(name, err)
	}
	return Meta{Name: name, Version: aws.ToString(out.VersionId), Updated: time.Now().UTC()}, nil
}

// Restore moves the AWSCURRENT label back to an earlier version.
func (a *AWS) Restore(ctx context.Context, name, ver string) (Meta, error) {
	cur, err := a.Get(ctx, name)
	if err != nil {
		return Meta{}, err
	}
	if cur.Version == ver {
		return Meta{Name: name, Version: ver}, nil
	}
	_, err = a.c.UpdateSecretVersionStage(ctx, &sm.UpdateSecretVersionStageInput{
		SecretId:            a.id(name),
		VersionStage:        aws.String("AWSCURRENT"),
		MoveToVersionId:     aws.String(ver),
		RemoveFromVersionId: aws.String(cur.Version),
	})
	if err != nil {
		return Meta{}, a.wrap(name, err)
	}
	return Meta{Name: name, Version: ver, Updated: time.Now().UTC()}, nil
}

// Delete deletes the secret: after the recovery window, or at once with
// ForceDelete.
func (a *AWS) Delete(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	in := &sm.DeleteSecretInput{SecretId: a.id(name)}
	if a.opts.ForceDelete {
		in.ForceDeleteWithoutRecovery = aws.Bool(true)
	}
	if _, err := a.c.DeleteSecret(ctx, in); err != nil {
		return a.wrap(name, err)
	}
	return nil
}

// requestToken is an idempotency token: a retried PutSecretValue with the
// same token does not make a second version.
func requestToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
