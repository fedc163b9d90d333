using System.Text.Json;
using System.Text.Json.Serialization;

namespace Hcsc.Samples.ImageNetPretrain.Training;

/// <summary>Appends one JSON object per line to <c>metrics.jsonl</c>, flushed at once so a crash loses nothing written.</summary>
public sealed class MetricsLog
{
    /// <summary>How records are written: one line, fields without a value left out.</summary>
    internal static readonly JsonSerializerOptions Json = new() { WriteIndented = false, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };
    private readonly string _path;

    /// <summary>Writes to <paramref name="path"/>, appending to what is there (a resumed run continues the file).</summary>
    public MetricsLog(string path)
    {
        _path = path;
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!);
    }

    /// <summary>The file.</summary>
    public string Path => _path;

    /// <summary>Appends an epoch's <paramref name="record"/> as one line.</summary>
    public void Append(EpochRecord record) => AppendLine(JsonSerializer.Serialize(record, Json));

    /// <summary>Appends <paramref name="record"/> (an evaluation's) as one line.</summary>
    public void Append(IReadOnlyDictionary<string, object?> record) => AppendLine(JsonSerializer.Serialize(record, Json));

    private void AppendLine(string line)
    {
        using var stream = new FileStream(_path, FileMode.Append, FileAccess.Write, FileShare.Read);
        using var writer = new StreamWriter(stream);
        writer.WriteLine(line);
        writer.Flush();
        stream.Flush(flushToDisk: true);
    }

    /// <summary>Drops lines of epochs at or after <paramref name="epoch"/> (before a resumed run rewrites them).</summary>
    public void TruncateFrom(int epoch)
    {
        if (!File.Exists(_path))
        {
            return;
        }

        var kept = File.ReadAllLines(_path).Where(line =>
        {
            try
            {
                using var document = JsonDocument.Parse(line);
                return !document.RootElement.TryGetProperty("epoch", out var e) || e.GetInt32() < epoch;
            }
            catch (JsonException)
            {
                return false; // a line cut short by a crash
            }
        }).ToArray();
        string temp = _path + ".tmp";
        File.WriteAllLines(temp, kept);
        File.Move(temp, _path, overwrite: true);
    }
}
