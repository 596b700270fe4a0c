#!/bin/sh
# /payload/run in each kernel of the matrix (see payload.sh): the kernel
# tests, as root with CI semantics (nothing skips), on this kernel.
set -eo pipefail
export CI=true FDTRACE_BIN=/payload/bin/fdtrace FDTRACE_PREBUILT=/payload/workloads FDTRACE_REPO=/payload/repo
cd /tmp
ulimit -n 20000 || true # as the hosts: the close_range test makes 12,000 fds

run() { # BINARY TEST...: each test must exist and pass
	bin=$1
	shift
	pattern="^($(echo "$@" | tr ' ' '|'))\$"
	echo "guest: $bin -test.run '$pattern'"
	"/payload/bin/$bin" -test.count=1 -test.timeout=30m -test.v -test.run "$pattern" | tee /tmp/run.txt
	for t in "$@"; do
		grep -q -- "^--- PASS: $t " /tmp/run.txt || { echo "guest: $bin has no test $t that passed"; exit 1; }
	done
}

# Check's results, what is not ok logged: each load of the programs takes
# about half a minute in an emulated VM, and the test does what `fdtrace
# check` would again.
run loader.test TestCheckSaysWhatThisKernelCanDoAndPassesAsRoot
run tracer.test TestRandomFDSyscallsKeepFdtraceEqualToProc \
	TestExhaustingTheFDLimitCountsEMFILEPerSyscallAndRefusedConnections \
	TestAServerThatRetriesHasItsRefusedAcceptsCountedPerPortAndDropsNobody \
	TestLibuvsDrainOfItsListenQueueCountsEveryDroppedClientPerPort \
	TestABTFFileCanStandInForTheKernelsOwn \
	TestExecDropsCloseOnExecFDsWithARecordEach \
	TestForkedChildInheritsTheTableAndCountsOnItsOwn \
	TestAProcessSharingItsParentsTableLeavesItsFDsToTheParent \
	TestNoRecordOutlivesProcessesExitingWithASharedTable \
	TestACloseRangeOfThousandsOfFDsLeavesNoRecord \
	TestFDsInstalledOutsideTheCreatingSyscallsHaveRecords \
	TestAnIOUringOpenHasItsRecordWithTheSubmittersStack \
	TestIOUringAcceptsHaveTheirRecordsInlineAsyncAndMultishot \
	TestStressNgsFDsAllHaveRecordsAtQuietPoints \
	TestAFanotifyListenersEventFDsAreAttributedToItsRead \
	TestProcessesWhosePidsShareASlotAreCountedApart
# The compat programs (before 5.17) have no compare-and-swap: threads
# racing on one record can both act on it (docs/limitations.md).
case $(uname -r) in
5.1[0-6].*) ;;
*) run tracer.test TestTheCloseStressorsRacesLeaveExactCountsRoundAfterRound ;;
esac
run cmd.test TestTraceOfACommandRecordsItExactlyAndExitsWithItsStatus \
	TestErrorsOnlyHostWideReportsEMFILEAndNoOpens \
	TestLeaksOfACProgramNameTheFunctionsThatLeaked
echo "guest: all passed"
