using System.CommandLine;
using System.Globalization;

namespace Hcsc.Samples.ImageNetPretrain.Commands;

/// <summary>
/// Command-line options that set <see cref="Hcsc.Core.Options.HcscOptions"/> keys. An option only
/// counts when the user gave it, so presets and the configuration file keep their values otherwise.
/// </summary>
public sealed class OptionMap
{
    private readonly List<(Option Option, Func<ParseResult, IEnumerable<KeyValuePair<string, string?>>> Read)> _entries = [];

    /// <summary>Adds a scalar option bound to <paramref name="key"/> (e.g. <c>Training:Epochs</c>).</summary>
    public Option<T> Scalar<T>(Command command, string name, string key, string description, params string[] aliases)
    {
        var option = new Option<T>(name, aliases) { Description = $"{description} [{key}]" };
        command.Options.Add(option);
        _entries.Add((option, parse => [new(key, Format(parse.GetValue(option)))]));
        return option;
    }

    /// <summary>Adds a comma-separated list option bound to the list <paramref name="key"/> (e.g. <c>Clustering:NumClusters</c>).</summary>
    public Option<string> List(Command command, string name, string key, string description)
    {
        var option = new Option<string>(name) { Description = $"{description}, comma-separated [{key}]" };
        command.Options.Add(option);
        _entries.Add((option, parse => (parse.GetValue(option) ?? string.Empty)
            .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select((item, i) => new KeyValuePair<string, string?>($"{key}:{i}", item))));
        return option;
    }

    /// <summary>The settings the user gave on the command line.</summary>
    public Dictionary<string, string?> Settings(ParseResult parse)
    {
        var settings = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        foreach (var (option, read) in _entries)
        {
            if (parse.GetResult(option) is { Implicit: false })
            {
                foreach (var (key, value) in read(parse))
                {
                    settings[key] = value;
                }
            }
        }

        return settings;
    }

    private static string? Format(object? value) => value switch
    {
        null => null,
        bool b => b ? "true" : "false",
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString(),
    };
}
