package streams_test

import (
	"slices"
	"testing"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/streams"
)

// TestFilesDefineTheContract: the definition files define every stream and
// bucket pkg/contract names, and nothing else, each stream on exactly the
// subjects of the contract's prefixes.
func TestFilesDefineTheContract(t *testing.T) {
	t.Parallel()
	files, err := streams.Load(streams.Files())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		contract.StreamIngress:          {contract.SubjectCallback + ">", contract.SubjectSNS + ">"},
		contract.StreamQuota:            {contract.SubjectQuota + ">"},
		contract.StreamArchive:          {contract.SubjectArchiveStored + "*", contract.SubjectArchiveFailed + "*", contract.SubjectArchiveDropped + "*"},
		contract.StreamJobs:             {contract.SubjectJobFinished + "*"},
		contract.StreamDead:             {contract.SubjectDead + ">"},
		contract.StreamIngressClaims:    {contract.SubjectIngressClaim + "*"},
		contract.StreamQuotaTimers:      {contract.SubjectQuotaTimer + ">", contract.SubjectQuotaDue + ">"},
		contract.StreamArchiverTimers:   {contract.SubjectArchiverTimer + ">", contract.SubjectArchiverDue + ">"},
		contract.StreamArchiverRetry:    {contract.SubjectArchiverRetry + "*"},
		contract.StreamAggregatorTimers: {contract.SubjectAggregatorTimer + ">", contract.SubjectAggregatorDue + ">"},
		contract.StreamAggregatorFacts:  {contract.SubjectAggregatorFact + ">"},
	}
	buckets := []string{contract.BucketSNSConfirmations, contract.BucketArchiveKeys, contract.BucketAggregatorState, contract.BucketConsoleSessions}
	seen := map[string]bool{}
	for _, f := range files {
		switch {
		case f.KV != nil:
			if !slices.Contains(buckets, f.KV.Bucket) {
				t.Errorf("%s: bucket %s is not named by pkg/contract", f.Name, f.KV.Bucket)
			}
			seen[f.KV.Bucket] = true
		case f.Stream != nil:
			subjects, ok := want[f.Stream.Name]
			if !ok {
				t.Errorf("%s: stream %s is not named by pkg/contract", f.Name, f.Stream.Name)
			} else if !slices.Equal(f.Stream.Subjects, subjects) {
				t.Errorf("%s: subjects %q, the contract's %q", f.Name, f.Stream.Subjects, subjects)
			}
			seen[f.Stream.Name] = true
		}
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("no file defines the stream %s", name)
		}
	}
	for _, name := range buckets {
		if !seen[name] {
			t.Errorf("no file defines the bucket %s", name)
		}
	}
}
