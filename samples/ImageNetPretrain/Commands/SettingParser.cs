namespace Hcsc.Samples.ImageNetPretrain.Commands;

/// <summary>Parses <c>--set Section:Key=value</c> arguments.</summary>
public static class SettingParser
{
    /// <summary>The settings, or null after writing the malformed one to <paramref name="error"/>.</summary>
    public static Dictionary<string, string?>? Parse(IEnumerable<string> items, TextWriter error)
    {
        var settings = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        foreach (string item in items)
        {
            int equals = item.IndexOf('=', StringComparison.Ordinal);
            if (equals <= 0)
            {
                error.WriteLine($"The setting '{item}' is not of the form Section:Key=value, e.g. Model:QueueLength=4096.");
                return null;
            }

            settings[item[..equals]] = item[(equals + 1)..];
        }

        return settings;
    }
}
