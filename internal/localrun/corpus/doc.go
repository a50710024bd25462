// Package corpus runs every pipeline of testdata/pipelines through the built
// goagent binary (`goagent exec`) and checks it against its sidecar,
// NAME.expect.yaml: the exit status, the run's result, each job's and the
// named steps' results (from `--summary`), and text that must or must not
// appear in the output. The test builds the repositories a pipeline needs
// (its self repository, siblings, branches, submodules) in a temporary
// directory first. See corpus_test.go for the sidecar format.
//
// The package has no code besides this comment.
package corpus
