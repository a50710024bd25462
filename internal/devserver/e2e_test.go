package devserver_test

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/goagent-dev/goagent/internal/azdo"
	"github.com/goagent-dev/goagent/internal/devserver"
	"github.com/goagent-dev/goagent/internal/wire"
)

// TestEndToEndThroughAzdo drives the emulator with the agent's REST client
// through the whole listener and worker protocol, checking the crypto with
// code written here and with the openssl command-line tool.
func TestEndToEndThroughAzdo(t *testing.T) {
	s := startServer(t, devserver.Options{PollHold: 2 * time.Second})
	ctx := waitCtx(t)
	tr, err := azdo.NewTransport(azdo.TransportOptions{CAFiles: []string{s.CAFile()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr}
	opts := azdo.Options{HTTPClient: hc, Retries: -1}
	pat := azdo.StaticToken{Scheme: "Basic", Value: base64.StdEncoding.EncodeToString([]byte("VstsAgent:" + s.PAT()))}
	reg, err := azdo.New(s.URL(), pat, opts)
	if err != nil {
		t.Fatal(err)
	}

	// connectionData → pools → register.
	cd, err := reg.ConnectionData(ctx)
	if err != nil {
		t.Fatalf("connectionData: %v", err)
	}
	if cd.DeploymentType == nil || *cd.DeploymentType != "hosted" || cd.AuthenticatedUser == nil || cd.InstanceId == nil {
		t.Fatalf("connectionData: %+v", cd)
	}
	if cd.LocationServiceData == nil || cd.LocationServiceData.ServiceDefinitions == nil || len(*cd.LocationServiceData.ServiceDefinitions) == 0 {
		t.Fatal("connectionData has no service definitions although connectOptions=1 asked for them")
	}
	pools, err := reg.PoolsByName(ctx, "default")
	if err != nil || len(pools) != 1 || *pools[0].Name != "Default" {
		t.Fatalf("pools by name: %v %v", pools, err)
	}
	poolID := *pools[0].Id
	key := newKey(t)
	mod, exp := key.PublicKey.N.Bytes(), big32(key.PublicKey.E)
	added, err := reg.AddAgent(ctx, poolID, &taskagent.TaskAgent{
		Name: ptr("e2e-agent"), Version: ptr("4.275.0"), OsDescription: ptr("Linux"),
		MaxParallelism: ptr(1), ProvisioningState: ptr("Provisioned"),
		Authorization: &taskagent.TaskAgentAuthorization{PublicKey: &taskagent.TaskAgentPublicKey{Exponent: &exp, Modulus: &mod}},
	})
	if err != nil {
		t.Fatalf("add agent: %v", err)
	}
	if added.Authorization == nil || added.Authorization.ClientId == nil || *added.Authorization.AuthorizationUrl != s.TokenURL() {
		t.Fatalf("agent authorization: %+v", added.Authorization)
	}
	if _, err := reg.AddAgent(ctx, poolID, &taskagent.TaskAgent{Name: ptr("E2E-AGENT"), Authorization: added.Authorization}); !errors.Is(err, azdo.ErrAgentExists) {
		t.Fatalf("second add with the same name: %v, want ErrAgentExists", err)
	}

	// OAuth token with a client assertion written here.
	r := registered{ID: *added.Id, ClientID: added.Authorization.ClientId.String(), AuthURL: *added.Authorization.AuthorizationUrl, Key: key, PoolID: poolID, Name: "e2e-agent"}
	access := agentToken(t, hc, r)
	ag, err := azdo.New(s.URL(), azdo.StaticToken{Scheme: "Bearer", Value: access}, opts)
	if err != nil {
		t.Fatal(err)
	}

	// Session: the key is RSA-OAEP-SHA1 wrapped to the registered key.
	sess, err := ag.CreateSession(ctx, poolID, &taskagent.TaskAgentSession{
		OwnerName: ptr("e2ehost"),
		Agent:     &taskagent.TaskAgentReference{Id: added.Id, Name: added.Name, Version: ptr("4.275.0"), OsDescription: ptr("Linux")},
	})
	if err != nil {
		t.Fatalf("create session: %v", err)
	}
	if sess.EncryptionKey == nil || sess.EncryptionKey.Encrypted == nil || !*sess.EncryptionKey.Encrypted {
		t.Fatalf("session key not marked encrypted: %+v", sess.EncryptionKey)
	}
	wrapped := *sess.EncryptionKey.Value
	aesKey := rsaOAEPSHA1Decrypt(t, key, wrapped)
	if len(aesKey) != 32 {
		t.Fatalf("session key is %d bytes, want 32 (AES-256)", len(aesKey))
	}
	if _, err := ag.CreateSession(ctx, poolID, &taskagent.TaskAgentSession{OwnerName: ptr("e2ehost"), Agent: &taskagent.TaskAgentReference{Id: added.Id}}); !errors.Is(err, azdo.ErrSessionConflict) {
		t.Fatalf("second session: %v, want ErrSessionConflict", err)
	}

	// Queue a job; poll; decrypt; acknowledge.
	job, err := s.QueueJob(simpleJob(0), devserver.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := ag.GetMessage(ctx, poolID, sess.SessionId.String(), -1, time.Minute)
	if err != nil || msg == nil {
		t.Fatalf("get message: %v %v", msg, err)
	}
	if *msg.MessageType != wire.MessageJobRequest || msg.Iv == nil || len(*msg.Iv) != 16 {
		t.Fatalf("message envelope: type %v iv %v", *msg.MessageType, msg.Iv)
	}
	plain, err := aesCBCDecrypt(aesKey, *msg.Iv, *msg.Body)
	if err != nil {
		t.Fatalf("decrypt job message: %v", err)
	}
	crossCheckWithOpenSSL(t, key, wrapped, aesKey, *msg.Iv, *msg.Body, plain)
	var jm wire.JobRequestMessage
	if err := json.Unmarshal(plain, &jm); err != nil {
		t.Fatalf("job message JSON: %v", err)
	}
	if err := ag.DeleteMessage(ctx, poolID, sess.SessionId.String(), *msg.MessageId); err != nil {
		t.Fatalf("delete message: %v", err)
	}
	if jm.JobID != job.ID() || jm.RequestID != job.RequestID() || jm.Plan.Version != devserver.DefaultPlanVersion {
		t.Fatalf("job message ids: %s %d %d", jm.JobID, jm.RequestID, jm.Plan.Version)
	}
	sc := jm.SystemConnection()
	if sc == nil || sc.URL != s.URL()+"/" || sc.Authorization.Scheme != "OAuth" || sc.Authorization.Parameters["AccessToken"] != job.Token() {
		t.Fatalf("SystemVssConnection: %+v", sc)
	}
	if v := jm.Variables["system.accessToken"]; v.Value != job.Token() || !v.IsSecret {
		t.Fatalf("system.accessToken: %+v", v)
	}
	for _, name := range []string{"system.collectionUri", "system.teamFoundationCollectionUri", "system.taskDefinitionsUri"} {
		if jm.Variables[name].Value != s.URL()+"/" {
			t.Fatalf("%s = %q", name, jm.Variables[name].Value)
		}
	}
	if !strings.HasPrefix(job.Token(), "eyJ") {
		t.Fatalf("job token is not a JWT: %.10s…", job.Token())
	}

	// Renew the lock.
	before := time.Now()
	jr, err := ag.RenewJobRequest(ctx, poolID, jm.RequestID, time.Minute)
	if err != nil {
		t.Fatalf("renew: %v", err)
	}
	if jr.LockedUntil == nil || jr.LockedUntil.Time.Before(before.Add(9*time.Minute)) {
		t.Fatalf("lockedUntil = %v, want about renewal + 10 min", jr.LockedUntil)
	}
	if job.State() != devserver.JobRunning {
		t.Fatalf("state after renew = %s", job.State())
	}

	// Worker side with the job's own token.
	pc, err := azdo.New(sc.URL, azdo.StaticToken{Scheme: "Bearer", Value: sc.Authorization.Parameters["AccessToken"]}, opts)
	if err != nil {
		t.Fatal(err)
	}
	plan := &azdo.Plan{Client: pc, Scope: jm.Plan.ScopeIdentifier, Hub: jm.Plan.PlanType, PlanID: jm.Plan.PlanID, TimelineID: jm.Timeline.ID}
	jobID, _ := uuid.Parse(jm.JobID)
	stepID, _ := uuid.Parse(jm.Steps[0].ID)
	now := &azuredevops.Time{Time: time.Now().UTC()}
	inProgress, completed := taskagent.TimelineRecordStateValues.InProgress, taskagent.TimelineRecordStateValues.Completed
	pending := taskagent.TimelineRecordStateValues.Pending
	succeeded := taskagent.TaskResultValues.Succeeded
	if _, err := plan.UpdateRecords(ctx, []taskagent.TimelineRecord{
		{Id: &jobID, State: &inProgress, StartTime: now, WorkerName: ptr("e2e-agent")},
		{Id: &stepID, ParentId: &jobID, Type: ptr("Task"), Name: ptr("Say hello"), RefName: ptr("CmdLine"), Order: ptr(1), State: &pending},
	}); err != nil {
		t.Fatalf("update records: %v", err)
	}
	if _, err := plan.UpdateRecords(ctx, []taskagent.TimelineRecord{{Id: &stepID, State: &inProgress, StartTime: now}}); err != nil {
		t.Fatalf("start step: %v", err)
	}
	lines := []string{"hello", "world"}
	if err := plan.AppendFeed(ctx, jm.JobID, taskagent.TimelineRecordFeedLinesWrapper{Count: ptr(2), Value: &lines, StepId: &stepID, StartLine: ptr(uint64(1))}); err != nil {
		t.Fatalf("feed: %v", err)
	}
	log, err := plan.CreateLog(ctx, `logs\`+stepID.String())
	if err != nil || log.Id == nil {
		t.Fatalf("create log: %v", err)
	}
	page := []byte("2026-01-01T00:00:00.0000000Z hello\n2026-01-01T00:00:00.0000001Z world\n")
	if tl, err := plan.AppendLog(ctx, *log.Id, page); err != nil || tl.LineCount == nil || *tl.LineCount != 2 {
		t.Fatalf("append log: %v %+v", err, tl)
	}
	if _, err := plan.UpdateRecords(ctx, []taskagent.TimelineRecord{
		{Id: &stepID, State: &completed, Result: &succeeded, FinishTime: now, PercentComplete: ptr(100), Log: &taskagent.TaskLogReference{Id: log.Id}},
		{Id: &jobID, State: &completed, Result: &succeeded, FinishTime: now},
	}); err != nil {
		t.Fatalf("complete records: %v", err)
	}
	if err := plan.RaiseEvent(ctx, wire.JobEvent{Name: "JobCompleted", JobID: jm.JobID, RequestID: jm.RequestID, Result: "succeeded"}); err != nil {
		t.Fatalf("JobCompleted: %v", err)
	}
	result, err := job.Wait(ctx)
	if err != nil || result != "succeeded" {
		t.Fatalf("job result %q, %v", result, err)
	}

	// What the emulator holds.
	recs := job.Timeline()
	if len(recs) != 2 || recs[0].Id.String() != jm.JobID || *recs[1].Name != "Say hello" || *recs[1].State != completed {
		t.Fatalf("timeline: %d records", len(recs))
	}
	if *recs[0].WorkerName != "e2e-agent" || *recs[0].Result != succeeded {
		t.Fatalf("job record not merged: %+v", recs[0])
	}
	if got := job.Feed(stepID.String()); strings.Join(got, "|") != "hello|world" {
		t.Fatalf("feed = %q", got)
	}
	if got := job.LogLines(stepID.String()); len(got) != 2 || !strings.HasSuffix(got[1], " world") {
		t.Fatalf("log lines = %q", got)
	}
	if ev := job.Events(); len(ev) != 1 || ev[0].Name != "JobCompleted" {
		t.Fatalf("events = %+v", ev)
	}

	// The job token dies with the job.
	if _, err := plan.CreateLog(ctx, "late"); !errors.Is(err, azdo.ErrUnauthorized) {
		t.Fatalf("job token after the job: %v, want unauthorized", err)
	}

	// Tear down: session, agent.
	if err := ag.DeleteSession(ctx, poolID, sess.SessionId.String()); err != nil {
		t.Fatalf("delete session: %v", err)
	}
	if err := reg.DeleteAgent(ctx, poolID, *added.Id); err != nil {
		t.Fatalf("delete agent: %v", err)
	}
	if list, err := reg.AgentsByName(ctx, poolID, "e2e-agent"); err != nil || len(list) != 0 {
		t.Fatalf("agents after delete: %v %v", list, err)
	}

	if v := job.Violations(); len(v) > 0 {
		t.Errorf("job violations: %q", v)
	}
	for _, v := range s.Violations() {
		t.Errorf("violation: %s", v)
	}
	// No credential appears in what the recorder holds.
	secrets := map[string]string{"PAT": s.PAT(), "agent token": access, "job token": job.Token(), "secret variable": "hunter2hunter2"}
	for _, ex := range s.Recorder().Exchanges() {
		all := [][]byte{ex.RequestBody, ex.ResponseBody, []byte(ex.Query)}
		for name, vals := range ex.RequestHeader {
			all = append(all, []byte(name+": "+strings.Join(vals, ",")))
		}
		for what, secret := range secrets {
			for _, b := range all {
				if bytes.Contains(b, []byte(secret)) {
					t.Errorf("%s appears in the recorded %s %s", what, ex.Method, ex.Path)
				}
			}
		}
	}
}

// crossCheckWithOpenSSL decrypts the session key and the message body with
// the openssl command-line tool and compares with the Go results.
func crossCheckWithOpenSSL(t *testing.T, key *rsa.PrivateKey, wrapped, aesKey, iv []byte, body string, plain []byte) {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Log("openssl is not installed: the independent openssl cross-check is skipped (install it: apt-get install openssl)")
		return
	}
	dir := t.TempDir()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "agent.pem")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	wrappedFile := filepath.Join(dir, "wrapped.bin")
	os.WriteFile(wrappedFile, wrapped, 0o600)
	out, err := exec.Command(bin, "pkeyutl", "-decrypt", "-inkey", keyFile, "-in", wrappedFile,
		"-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha1", "-pkeyopt", "rsa_mgf1_md:sha1").Output()
	if err != nil {
		t.Fatalf("openssl pkeyutl -decrypt: %v", err)
	}
	if !bytes.Equal(out, aesKey) {
		t.Fatalf("openssl unwrapped a different session key")
	}
	ct, err := base64.StdEncoding.DecodeString(body)
	if err != nil {
		t.Fatal(err)
	}
	ctFile := filepath.Join(dir, "body.bin")
	os.WriteFile(ctFile, ct, 0o600)
	out, err = exec.Command(bin, "enc", "-d", "-aes-256-cbc", "-K", hex.EncodeToString(out), "-iv", hex.EncodeToString(iv), "-in", ctFile).Output()
	if err != nil {
		t.Fatalf("openssl enc -d -aes-256-cbc: %v", err)
	}
	if !bytes.Equal(out, plain) {
		t.Fatalf("openssl decrypted a different message body")
	}
}

func ptr[T any](v T) *T { return &v }
