// What the web pages' controls share: running a user's action and showing its failure.

export const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e));

/**
 * Runs a user's action, `control` (if given) disabled until it settles (no
 * second click meanwhile); a failure goes to `fail`. Resolves whether it succeeded.
 */
export async function runAction(action: () => Promise<unknown>, fail: (e: unknown) => void, control?: { disabled: boolean }): Promise<boolean> {
  if (control) control.disabled = true;
  try {
    await action();
    return true;
  } catch (e) {
    fail(e);
    return false;
  } finally {
    if (control) control.disabled = false;
  }
}
