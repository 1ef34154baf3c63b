//go:build linux

package fuseuring

// SetTestSetupFails lets the tests outside the package (which mount
// through fuseconn, itself a user of this package) make a thread's setup
// fail.
func SetTestSetupFails(f func(thread int) error) { testSetupFails = f }
