using System.Diagnostics;
using System.Globalization;

namespace Hcsc.Samples.ImageNetPretrain.Training;

/// <summary>
/// A line-based progress display for long loops (works in terminals and in CI logs alike):
/// at most one line every <c>interval</c>, with the rate, the ETA of the loop and custom fields.
/// </summary>
public sealed class ProgressReporter
{
    private readonly TextWriter _output;
    private readonly string _label;
    private readonly long _total;
    private readonly TimeSpan _interval;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private TimeSpan? _lastPrint;

    /// <summary>Reports on <paramref name="total"/> units of work labelled <paramref name="label"/>.</summary>
    public ProgressReporter(TextWriter output, string label, long total, TimeSpan? interval = null)
    {
        _output = output;
        _label = label;
        _total = Math.Max(1, total);
        _interval = interval ?? TimeSpan.FromSeconds(5);
    }

    /// <summary>Elapsed time since the reporter was created.</summary>
    public TimeSpan Elapsed => _clock.Elapsed;

    /// <summary>Prints a line when the interval has passed or the work is done; <paramref name="fields"/> (e.g. "loss 5.12") is only evaluated then.</summary>
    public void Report(long done, Func<string> fields, bool force = false)
    {
        var now = _clock.Elapsed;
        if (!force && done < _total && _lastPrint is { } last && now - last < _interval)
        {
            return;
        }

        _lastPrint = now;
        double rate = done / Math.Max(now.TotalSeconds, 1e-9);
        var eta = TimeSpan.FromSeconds(rate > 0 ? (_total - done) / rate : 0);
        double percent = 100.0 * done / _total;
        _output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{_label} {done}/{_total} ({percent:F0}%) {fields()} | {Format(now)} elapsed, ETA {Format(eta)}"));
    }

    /// <summary>Formats a duration as <c>1h02m</c>, <c>3m05s</c> or <c>12s</c>.</summary>
    public static string Format(TimeSpan t) =>
        t.TotalHours >= 1 ? $"{(int)t.TotalHours}h{t.Minutes:D2}m" : t.TotalMinutes >= 1 ? $"{(int)t.TotalMinutes}m{t.Seconds:D2}s" : $"{t.TotalSeconds:F0}s";
}
