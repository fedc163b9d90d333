using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Hcsc.Core.Options;

/// <summary>Registers <see cref="HcscOptions"/> with the Options pattern.</summary>
public static class HcscServiceCollectionExtensions
{
    /// <summary>
    /// Binds <see cref="HcscOptions"/> from <paramref name="configuration"/> (e.g. the <c>Hcsc</c>
    /// section of a JSON file or of the command line, <c>--Hcsc:Model:QueueLength=4096</c>) and
    /// validates it with <see cref="HcscOptionsValidator"/>; reading <c>IOptions&lt;HcscOptions&gt;.Value</c>
    /// throws an <see cref="OptionsValidationException"/> listing every problem.
    /// Lists given in configuration replace the defaults (they are not appended to them).
    /// </summary>
    public static IServiceCollection AddHcscOptions(this IServiceCollection services, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configuration);
        services.AddOptions<HcscOptions>().Configure(options => HcscOptionsBinder.Bind(configuration, options));
        services.AddSingleton<IValidateOptions<HcscOptions>, HcscOptionsValidator>();
        return services;
    }

    /// <summary>
    /// Registers Hcsc for an application that uses dependency injection: <see cref="HcscOptions"/> bound from the
    /// <c>Hcsc</c> section of <paramref name="configuration"/> (see <see cref="AddHcscOptions"/>) and validated at
    /// start-up, so a host with invalid options fails to start with an <see cref="OptionsValidationException"/> that
    /// lists every problem. Without a host, resolve <see cref="IStartupValidator"/> and call <c>Validate()</c>.
    /// </summary>
    /// <example>
    /// <code>
    /// var builder = Host.CreateApplicationBuilder(args);   // appsettings.json: { "Hcsc": { "Model": { "QueueLength": 4096 } } }
    /// builder.Services.AddHcsc(builder.Configuration);
    /// var options = builder.Build().Services.GetRequiredService&lt;IOptions&lt;HcscOptions&gt;&gt;().Value;
    /// </code>
    /// </example>
    public static IServiceCollection AddHcsc(this IServiceCollection services, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        services.AddHcscOptions(configuration.GetSection(HcscOptions.SectionName));
        services.AddOptions<HcscOptions>().ValidateOnStart();
        return services;
    }
}
