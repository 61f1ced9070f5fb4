// SPDX-License-Identifier: MIT
/*
 * with-protected-vm: runs an unmodified KVM VMM so that the VM it creates is
 * a protected one. Linux's KVM API asks for a protected VM with bit 31 of
 * KVM_CREATE_VM's type, KVM_VM_TYPE_ARM_PROTECTED; a VMM without an option
 * for it (kvmtool has none) never sets it. This program starts COMMAND under
 * ptrace, stops it at the entry of its first ioctl(fd, KVM_CREATE_VM, type),
 * ORs the bit into the type (the IPA-size bits the VMM chose stay), lets the
 * call run, prints the type it became and the call's result, and detaches:
 * from then on the VMM runs untraced, at full speed. Only the thread that
 * ran the exec is traced, and the VMM creates its VM before its first thread.
 * Exits with COMMAND's status (128 + the signal if a signal ended it), or 125
 * if it could not run it at all, or if COMMAND ended before creating a VM.
 *   with-protected-vm COMMAND [ARGUMENTS...]
 * Built by scripts/build-kvm-api-test; scripts/run-kvmtool runs lkvm with it.
 */
#include <elf.h>
#include <errno.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef KVM_VM_TYPE_ARM_PROTECTED
#define KVM_VM_TYPE_ARM_PROTECTED (1UL << 31)
#endif

/* The exit status when COMMAND could not be run as asked. */
#define CANNOT_RUN 125
/* A syscall stop's signal with PTRACE_O_TRACESYSGOOD. */
#define SYSCALL_STOP (SIGTRAP | 0x80)
/* arm64's syscall ABI: the number in x8, the arguments in x0..x5, the result in x0. */
#define SYSCALL_NUMBER_REGISTER 8

static int exit_status(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return CANNOT_RUN;
}

static int registers(pid_t pid, struct user_pt_regs *regs, int request)
{
	struct iovec io = { .iov_base = regs, .iov_len = sizeof(*regs) };

	return ptrace(request, pid, (void *)NT_PRSTATUS, &io) == 0 ? 0 : -1;
}

/* Waits for the traced child's next stop; returns -1 (status in *status) once it is gone. */
static int next_stop(pid_t pid, int *status)
{
	if (waitpid(pid, status, 0) != pid) {
		perror("with-protected-vm: waitpid");
		return -1;
	}
	return WIFSTOPPED(*status) ? 0 : -1;
}

/*
 * Runs the child to its KVM_CREATE_VM, changes its type, and returns once the
 * call is done (0), or -1 if the child ended first (*status says how).
 */
static int rewrite_create_vm(pid_t pid, int *status)
{
	int in_syscall = 0;
	int pending_signal = 0;
	struct user_pt_regs regs;

	for (;;) {
		if (ptrace(PTRACE_SYSCALL, pid, NULL, (void *)(intptr_t)pending_signal) != 0) {
			perror("with-protected-vm: PTRACE_SYSCALL");
			return -1;
		}
		if (next_stop(pid, status) != 0)
			return -1;
		pending_signal = 0;
		if (*status >> 16 != 0)
			continue; /* A ptrace event (the exec's): no signal to deliver. */
		if (WSTOPSIG(*status) != SYSCALL_STOP) {
			/* A signal for the child: deliver it when it goes on. */
			pending_signal = WSTOPSIG(*status);
			continue;
		}
		in_syscall = !in_syscall;
		if (!in_syscall)
			continue;
		if (registers(pid, &regs, PTRACE_GETREGSET) != 0) {
			perror("with-protected-vm: reading the registers");
			return -1;
		}
		if (regs.regs[SYSCALL_NUMBER_REGISTER] != __NR_ioctl || regs.regs[1] != KVM_CREATE_VM)
			continue;
		unsigned long type = regs.regs[2] | KVM_VM_TYPE_ARM_PROTECTED;
		regs.regs[2] = type;
		if (registers(pid, &regs, PTRACE_SETREGSET) != 0) {
			perror("with-protected-vm: writing the registers");
			return -1;
		}
		/* To the call's exit, for its result. */
		if (ptrace(PTRACE_SYSCALL, pid, NULL, NULL) != 0 || next_stop(pid, status) != 0)
			return -1;
		if (registers(pid, &regs, PTRACE_GETREGSET) != 0) {
			perror("with-protected-vm: reading the result");
			return -1;
		}
		long result = (long)regs.regs[0];
		if (result < 0)
			fprintf(stderr, "with-protected-vm: KVM_CREATE_VM(type 0x%lx) failed: %s\n", type,
				strerror((int)-result));
		else
			fprintf(stderr, "with-protected-vm: KVM_CREATE_VM(type 0x%lx) made VM fd %ld\n", type,
				result);
		return 0;
	}
}

int main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fprintf(argc < 2 ? stderr : stdout, "usage: with-protected-vm COMMAND [ARGUMENTS...]\n");
		return argc < 2 ? CANNOT_RUN : 0;
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("with-protected-vm: fork");
		return CANNOT_RUN;
	}
	if (pid == 0) {
		if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) != 0 || raise(SIGSTOP) != 0) {
			perror("with-protected-vm: PTRACE_TRACEME");
			_exit(CANNOT_RUN);
		}
		execvp(argv[1], &argv[1]);
		fprintf(stderr, "with-protected-vm: cannot run %s: %s\n", argv[1], strerror(errno));
		_exit(CANNOT_RUN);
	}
	int status;
	if (next_stop(pid, &status) != 0)
		return exit_status(status);
	/*
	 * PTRACE_O_TRACEEXEC: the exec stops as an event, not with a SIGTRAP
	 * that would have to be told apart from a real one; PTRACE_O_EXITKILL:
	 * the VMM does not outlive a wrapper that dies mid-trace.
	 */
	long options = PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL;
	if (ptrace(PTRACE_SETOPTIONS, pid, NULL, (void *)options) != 0) {
		perror("with-protected-vm: PTRACE_SETOPTIONS");
		kill(pid, SIGKILL);
		return CANNOT_RUN;
	}
	if (rewrite_create_vm(pid, &status) != 0) {
		if (WIFEXITED(status) || WIFSIGNALED(status)) {
			fprintf(stderr, "with-protected-vm: %s ended (status %d) before it created a VM\n",
				argv[1], exit_status(status));
			return CANNOT_RUN;
		}
		kill(pid, SIGKILL);
		return CANNOT_RUN;
	}
	if (ptrace(PTRACE_DETACH, pid, NULL, NULL) != 0) {
		perror("with-protected-vm: PTRACE_DETACH");
		kill(pid, SIGKILL);
		return CANNOT_RUN;
	}
	while (waitpid(pid, &status, 0) != pid) {
		if (errno != EINTR) {
			perror("with-protected-vm: waitpid");
			return CANNOT_RUN;
		}
	}
	return exit_status(status);
}
