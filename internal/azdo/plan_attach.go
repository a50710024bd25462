package azdo

import (
	"context"
	"io"
	"net/http"
	"strconv"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/goagent-dev/goagent/internal/wire"
)

// Plan calls whose body is a file: log pages (8 MiB each) and attachments
// (any size) are streamed from an io.ReaderAt (ReaderAtBody) rather than read
// into memory, and a retry replays them from the start.

// AppendLogContent appends size bytes read from content to log logID. Not
// retried by the client: an append that reached the server before the
// connection dropped would duplicate its lines, so callers upload the page to
// a new log instead (see internal/jobs/report).
func (p *Plan) AppendLogContent(ctx context.Context, logID int, content io.ReaderAt, size int64) (*taskagent.TaskLog, error) {
	var out taskagent.TaskLog
	_, err := p.Client.Send(ctx, Request{
		Method: http.MethodPost, Location: wire.LocationLogs, APIVersion: wire.APITask,
		RouteValues: p.values("logId", strconv.Itoa(logID)),
		Body:        ReaderAtBody{R: content, Size: size},
		ContentType: "application/octet-stream", NoRetry: true,
	}, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateAttachment uploads size bytes from content as attachment type/name of
// a timeline record (PUT, so a retry replaces rather than duplicates).
func (p *Plan) CreateAttachment(ctx context.Context, recordID, attachmentType, name string, content io.ReaderAt, size int64) (*taskagent.TaskAttachment, error) {
	var out taskagent.TaskAttachment
	_, err := p.Client.Send(ctx, Request{
		Method: http.MethodPut, Location: wire.LocationAttachments, APIVersion: wire.APITask,
		RouteValues: p.values("timelineId", p.TimelineID, "recordId", recordID, "type", attachmentType, "name", name),
		Body:        ReaderAtBody{R: content, Size: size},
		ContentType: "application/octet-stream",
	}, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}
