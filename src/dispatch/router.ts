/**
 * Number → operator → SMSC account. Built once at start: one lookup table
 * from operator to transport, so routing a recipient is two map reads.
 */
import { chooseAccount, operatorOf, type Operator } from '../core/route.js';
import type { SmsTransport } from '../core/ports.js';

export interface RoutedAccount {
  readonly name: string;
  readonly operators: readonly string[];
  readonly transport: SmsTransport;
}

const OPERATORS: readonly Operator[] = ['cmcc', 'cucc', 'ctcc', 'intl'];

export class Router {
  private readonly byOperator = new Map<Operator, SmsTransport>();

  constructor(accounts: readonly RoutedAccount[]) {
    for (const op of OPERATORS) {
      const account = chooseAccount(op, accounts);
      if (account) this.byOperator.set(op, account.transport);
    }
  }

  /** The transport for a normalised number, or undefined when no account serves its operator. */
  route(number: string): { operator: Operator; transport: SmsTransport | undefined } {
    const operator = operatorOf(number);
    return { operator, transport: this.byOperator.get(operator) };
  }
}
