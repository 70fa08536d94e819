#!/usr/bin/env node
// Runs the TypeScript entry point through tsx (a runtime dependency).
import { register } from 'tsx/esm/api';
register();
await import('../src/cli/main.ts');
