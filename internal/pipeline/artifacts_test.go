package pipeline

import (
	"slices"
	"testing"
	"time"
)

func TestArtifactsCachesAndNeedsExpand(t *testing.T) {
	t.Parallel()
	specs := mustExpand(t, `name: a
jobs:
  build:
    matrix: {os: [linux, mac]}
    steps: [{run: make}]
    artifacts:
      paths: ["dist/${{ matrix.os }}/**"]
      expire_in: 2d
    cache:
      - key: go-${{ matrix.os }}-${{ hashFiles('go.sum', '**/go.sum') }}
        paths: [~/go/pkg/mod]
        restore_keys: ["go-${{ matrix.os }}-"]
  lint:
    steps: [{run: lint}]
    artifacts: {name: report, paths: [lint.txt], when: always}
  test:
    needs: [build, {job: lint, artifacts: false}]
    steps: [{run: test}]
`)
	byKey := specsByKey(specs)
	b := byKey["build (mac)"]
	if a := b.Artifacts; a == nil || a.Name != DefaultArtifactsName || a.When != OnSuccess || a.ExpireIn != 48*time.Hour || !slices.Equal(a.Paths, []string{"dist/mac/**"}) {
		t.Errorf("build (mac) artifacts %+v", b.Artifacts)
	}
	if len(b.Cache) != 1 || b.Cache[0].Key != "go-mac-${{ hashFiles('go.sum', '**/go.sum') }}" || b.Cache[0].RestoreKeys[0] != "go-mac-" {
		t.Errorf("build (mac) cache %+v", b.Cache)
	}
	if l := byKey["lint"].Artifacts; l == nil || l.Name != "report" || l.When != AlwaysUp {
		t.Errorf("lint artifacts %+v", l)
	}
	tt := byKey["test"]
	if !slices.Equal(tt.Needs, []string{"build (linux)", "build (mac)", "lint"}) || !slices.Equal(tt.NoArtifactsFrom, []string{"lint"}) {
		t.Errorf("test needs %q, no artifacts from %q", tt.Needs, tt.NoArtifactsFrom)
	}
	if args, ok := HashFilesArgs(" hashFiles('go.sum', '**/go.sum') "); !ok || !slices.Equal(args, []string{"go.sum", "**/go.sum"}) {
		t.Errorf("HashFilesArgs: %q %v", args, ok)
	}
	for w, want := range map[ArtifactsWhen][2]bool{OnSuccess: {true, false}, OnFailure: {false, true}, AlwaysUp: {true, true}} {
		if w.Uploads(true) != want[0] || w.Uploads(false) != want[1] {
			t.Errorf("%s uploads after success/failure: %v %v", w, w.Uploads(true), w.Uploads(false))
		}
	}
}
