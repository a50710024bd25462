package listener

import "syscall"

// osDescription is what .NET's RuntimeInformation.OSDescription reports on
// Linux: "<sysname> <release> <version>" from uname(2).
func osDescription() string {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return "Linux"
	}
	str := func(b [65]int8) string {
		out := make([]byte, 0, len(b))
		for _, c := range b {
			if c == 0 {
				break
			}
			out = append(out, byte(c))
		}
		return string(out)
	}
	return str(u.Sysname) + " " + str(u.Release) + " " + str(u.Version)
}
