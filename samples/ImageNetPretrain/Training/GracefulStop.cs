using System.Runtime.InteropServices;

namespace Hcsc.Samples.ImageNetPretrain.Training;

/// <summary>
/// A request to end a run at the next step boundary with a checkpoint: Ctrl+C (SIGINT, exit code 130) or SIGTERM
/// (143, what schedulers and <c>kill</c> send). A second signal is not intercepted, so it ends the process at once.
/// </summary>
public sealed class GracefulStop : IDisposable
{
    private readonly List<PosixSignalRegistration> _registrations = [];
    private int _exitCode;

    /// <summary>True once a stop was requested.</summary>
    public bool Requested => Volatile.Read(ref _exitCode) != 0;

    /// <summary>The exit code the process should end with: 130 for SIGINT, 143 for SIGTERM; 0 when none was requested.</summary>
    public int ExitCode => Volatile.Read(ref _exitCode);

    /// <summary>Requests a stop (the first request wins).</summary>
    public void Request(int exitCode) => Interlocked.CompareExchange(ref _exitCode, exitCode, 0);

    /// <summary>Intercepts the first SIGINT and SIGTERM and turns them into a request, announced on <paramref name="output"/>.</summary>
    public static GracefulStop ListenToSignals(TextWriter output)
    {
        var stop = new GracefulStop();
        foreach (var (signal, code) in new[] { (PosixSignal.SIGINT, 130), (PosixSignal.SIGTERM, 143) })
        {
            stop._registrations.Add(PosixSignalRegistration.Create(signal, context =>
            {
                if (stop.Requested)
                {
                    return; // the second signal keeps its default action
                }

                context.Cancel = true;
                stop.Request(code);
                output.WriteLine($"{context.Signal} received: finishing the current step and writing a checkpoint (send it again to stop at once).");
            }));
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
    /// <summary>130 after SIGINT, 143 after SIGTERM.</summary>
    public int ExitCode { get; } = exitCode;
}
