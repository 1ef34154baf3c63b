# Sourced by tests/run (as root): FUSE over io_uring on for the length of a
# run, and the fuse module's switch put back as it was found once the last
# of several concurrent runs ends.
#
# One run alone could save the switch and put it back at exit, but two runs
# that overlap would each save what the other set: the first to end turns
# it off under the second (whose mounts then no longer match what it
# expects), and the second puts back the first's Y. So the runs share a
# record under $uring_state:
#   lock      held exclusively only while a run joins or leaves;
#   alive     held shared by every run for as long as it runs, so that the
#             kernel, not a list of process ids, tells who is still there
#             (a run killed with SIGKILL lets go of it by dying);
#   original  the switch's value before the first run of a group set it.
# The first run to join (nobody holds alive) writes original; the last to
# leave (nobody else holds alive) writes it back and removes it. A record
# found when nobody holds alive was left by a killed run: its value is
# still the original, and the killed run's Y is what the switch shows.
#
# The descriptors are 8 and 9, fixed so that tests/run can close them for
# the commands it starts: a child that inherited alive (a daemon a test
# left behind) would keep the group open after every run has ended.

uring_switch=${COMPOSEFS_TESTS_URING_SWITCH:-/sys/module/fuse/parameters/enable_uring}
uring_state=${COMPOSEFS_TESTS_URING_STATE:-/run/composefs-go-tests}

# uring_join sets the switch to Y, recording its value first if this run
# is the first of a group.
uring_join() {
	mkdir -p "$uring_state"
	exec 9>"$uring_state/lock" 8>"$uring_state/alive"
	flock -x 9
	if flock -xn 8; then
		if [ -s "$uring_state/original" ]; then
			echo "tests/run: a killed run left $uring_switch set; it was $(cat "$uring_state/original") before, and goes back to that at the end" >&2
		else
			cat "$uring_switch" >"$uring_state/original.new"
			mv "$uring_state/original.new" "$uring_state/original"
		fi
	fi
	# From exclusive to shared: not atomic, but lock keeps every other run
	# from looking in between.
	flock -s 8
	echo Y >"$uring_switch"
	flock -u 9
}

# uring_leave puts the recorded value back if no other run is left.
uring_leave() {
	flock -x 9
	if flock -xn 8 && [ -s "$uring_state/original" ]; then
		cat "$uring_state/original" >"$uring_switch"
		rm -f "$uring_state/original"
	fi
	exec 8>&-
	flock -u 9
	exec 9>&-
}
