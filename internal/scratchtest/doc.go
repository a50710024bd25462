// Package scratchtest proves that the static goagent binary works the way the
// scratch image runs it: alone in an empty root file system, with no shell,
// no git, no CA bundle and an empty PATH. It holds tests only; see
// scratch_test.go for how the empty root is entered (a chroot, from a user
// namespace when the tests do not run as root).
package scratchtest
