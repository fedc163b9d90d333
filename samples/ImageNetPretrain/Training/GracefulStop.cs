using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Hcsc.Samples.ImageNetPretrain.Training;

/// <summary>
/// Signals, turned into requests the run honours at the next step boundary:
/// <list type="bullet">
/// <item>SIGINT (Ctrl+C, exit code 130) and SIGTERM (143: <c>kill</c>, <c>timeout</c>, <c>scancel</c>, systemd): finish the
/// current step, write a checkpoint, exit. One request however many copies arrive together: a repeat within
/// <see cref="DuplicateWindow"/> of the first is the same request delivered twice (to the whole process group, and
/// again by a parent that forwards it: <c>dotnet run</c>, a shell wrapper, a launcher) and is absorbed; a repeat after
/// the window keeps the signal's default action, so a deliberate second Ctrl+C still stops at once.</item>
/// <item>SIGUSR1 and SIGUSR2 (a cluster's warning before a time limit or a pre-emption, e.g. Slurm's
/// <c>--signal=USR1@120</c>): with <see cref="UserSignalAction.Checkpoint"/> (default) write a checkpoint at the end of
/// the current step and go on; with <see cref="UserSignalAction.Requeue"/> write it and exit with
/// <see cref="RequeueExitCode"/>, for a batch script to requeue on.</item>
/// </list>
/// </summary>
public sealed class GracefulStop : IDisposable
{
    /// <summary>How long after a stop request the same signal counts as the same request.</summary>
    public static readonly TimeSpan DuplicateWindow = TimeSpan.FromSeconds(2);

    /// <summary>The exit code after a SIGUSR1/SIGUSR2 with <see cref="UserSignalAction.Requeue"/>: 75, EX_TEMPFAIL ("try again later").</summary>
    public const int RequeueExitCode = 75;

    // Linux's numbers; .NET takes raw signal numbers on Unix (PosixSignal names only the portable ones).
    private const int SigUsr1 = 10, SigUsr2 = 12;

    private readonly List<PosixSignalRegistration> _registrations = [];
    private readonly Stopwatch _sinceRequest = new();
    private int _exitCode;
    private int _checkpointRequested;

    /// <summary>True once a stop was requested.</summary>
    public bool Requested => Volatile.Read(ref _exitCode) != 0;

    /// <summary>The exit code the process should end with: 130 for SIGINT, 143 for SIGTERM, 75 for a requeue; 0 when none was requested.</summary>
    public int ExitCode => Volatile.Read(ref _exitCode);

    /// <summary>Whether a checkpoint was asked for and not yet taken (<see cref="TakeCheckpointRequest"/>).</summary>
    public bool CheckpointRequested => Volatile.Read(ref _checkpointRequested) != 0;

    /// <summary>Requests a stop (the first request wins).</summary>
    public void Request(int exitCode)
    {
        if (Interlocked.CompareExchange(ref _exitCode, exitCode, 0) == 0)
        {
            _sinceRequest.Start();
        }
    }

    /// <summary>Asks for a checkpoint at the end of the current step, the run going on.</summary>
    public void RequestCheckpoint() => Volatile.Write(ref _checkpointRequested, 1);

    /// <summary>Whether a checkpoint was asked for since the last call (the request is consumed).</summary>
    public bool TakeCheckpointRequest() => Interlocked.Exchange(ref _checkpointRequested, 0) != 0;

    /// <summary>
    /// Intercepts SIGINT, SIGTERM, SIGUSR1 and SIGUSR2 as described on the class, announcing each on
    /// <paramref name="output"/>; <paramref name="onUserSignal"/> says what SIGUSR1/SIGUSR2 do.
    /// </summary>
    public static GracefulStop ListenToSignals(TextWriter output, UserSignalAction onUserSignal = UserSignalAction.Checkpoint)
    {
        var stop = new GracefulStop();
        foreach (var (signal, code) in new[] { (PosixSignal.SIGINT, 130), (PosixSignal.SIGTERM, 143) })
        {
            stop._registrations.Add(PosixSignalRegistration.Create(signal, context =>
            {
                if (stop.Requested)
                {
                    if (stop._sinceRequest.Elapsed < DuplicateWindow)
                    {
                        context.Cancel = true; // the same request, delivered again
                        output.WriteLine($"{context.Signal} received again within {DuplicateWindow.TotalSeconds:0} s: the same stop request (send it again later to stop at once).");
                    }

                    return; // later: the signal keeps its default action and ends the process
                }

                context.Cancel = true;
                stop.Request(code);
                output.WriteLine($"{context.Signal} received: finishing the current step and writing a checkpoint (send it again to stop at once).");
            }));
        }

        if (OperatingSystem.IsLinux())
        {
            foreach (int number in new[] { SigUsr1, SigUsr2 })
            {
                string name = number == SigUsr1 ? "SIGUSR1" : "SIGUSR2";
                stop._registrations.Add(PosixSignalRegistration.Create((PosixSignal)number, context =>
                {
                    context.Cancel = true;
                    if (onUserSignal == UserSignalAction.Requeue)
                    {
                        stop.Request(RequeueExitCode);
                        output.WriteLine($"{name} received: finishing the current step, writing a checkpoint and exiting with {RequeueExitCode} to be requeued.");
                    }
                    else
                    {
                        stop.RequestCheckpoint();
                        output.WriteLine($"{name} received: writing a checkpoint at the end of the current step; the run goes on.");
                    }
                }));
            }
        }

        return stop;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var registration in _registrations)
        {
            registration.Dispose();
        }
    }
}

/// <summary>The run stopped on request after writing a checkpoint; <see cref="ExitCode"/> is the code to exit with.</summary>
public sealed class RunStoppedException(int exitCode, string message) : Exception(message)
{
    /// <summary>130 after SIGINT, 143 after SIGTERM, 75 after a requeue signal.</summary>
    public int ExitCode { get; } = exitCode;
}
