module github.com/goagent-dev/goagent

go 1.26.0

require (
	github.com/google/uuid v1.6.0 // indirect
	github.com/microsoft/azure-devops-go-api/azuredevops/v7 v7.1.1-0.20241014080628-3045bdf43455 // indirect
	golang.org/x/sync v0.24.0 // indirect
)
